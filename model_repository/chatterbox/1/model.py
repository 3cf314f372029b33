"""chatterbox: text (+ a voice) to streamed speech. All logic lives in ensemble/ (see ensemble/chatterbox/triton.py)."""

from tritone.ensemble.chatterbox.triton import ChatterboxTritonModel as TritonPythonModel  # noqa: F401
