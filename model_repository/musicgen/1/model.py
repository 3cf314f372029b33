"""musicgen: text to streamed music. All logic lives in ensemble/ (see ensemble/triton_glue.py)."""

from ensemble.triton_glue import MusicgenModel as TritonPythonModel  # noqa: F401
