"""orpheus: text (+ a voice) to streamed speech. All logic lives in ensemble/ (see ensemble/orpheus/triton.py)."""

from tritone.ensemble.orpheus.triton import OrpheusTritonModel as TritonPythonModel  # noqa: F401
