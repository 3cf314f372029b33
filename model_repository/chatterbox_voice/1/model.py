"""chatterbox_voice: a reference clip -> a Chatterbox voice. All logic lives in ensemble/chatterbox/triton.py."""

from tritone.ensemble.chatterbox.triton import ChatterboxVoiceTritonModel as TritonPythonModel  # noqa: F401
