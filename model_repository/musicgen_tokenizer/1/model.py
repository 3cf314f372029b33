"""musicgen_tokenizer: prompt text -> bucketed token ids (python on every target, dynamically batched).
All logic lives in ensemble/ (see ensemble/musicgen/text_conditioning.py)."""

from tritone.ensemble.musicgen.triton import MusicgenTokenizerTritonModel as TritonPythonModel  # noqa: F401
