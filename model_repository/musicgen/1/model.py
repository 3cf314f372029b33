"""musicgen: text to streamed music. All logic lives in ensemble/ (see ensemble/triton_glue.py)."""

from tritone.ensemble.triton.glue import MusicgenModel as TritonPythonModel  # noqa: F401
