"""orpheus: text (+ a voice) to streamed speech. All logic lives in ensemble/ (see ensemble/triton_glue.py)."""

from tritone.ensemble.triton.glue import SpeechTritonModel as TritonPythonModel  # noqa: F401
