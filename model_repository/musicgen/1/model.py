"""musicgen: text to streamed music. All logic lives in ensemble/ (see ensemble/musicgen/triton.py)."""

from tritone.ensemble.musicgen.triton import MusicgenTritonModel as TritonPythonModel  # noqa: F401
