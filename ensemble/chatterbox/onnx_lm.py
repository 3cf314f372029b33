"""Chatterbox's LM (T3) on ONNX Runtime (the CPU target): lm_step.onnx, lm_conditioning.onnx and the
embedding tables beside them. (ensemble/chatterbox/torch_lm.py is the GPU target's step.)

The family embeds every input itself: a prompt is cond_embeds (the conditioning graph, once per voice and
exaggeration) + text_emb[ids] + text_pos_emb[0..] (zeroed text embeddings in the unconditioned row, the
position embeddings still added) + speech start tokens; a sampled token t at speech step i is fed as
speech_emb[t] + speech_pos_emb[i].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tritone.ensemble import tensors as T
from tritone.ensemble.engine.onnx_runtime import OnnxLmStep, open_session

LM_STEP_FILE = "lm_step.onnx"
CONDITIONING_FILE = "lm_conditioning.onnx"
LLAMA_CONFIG_FILE = "lm_llama_config.json"  # T3's backbone config, for the torch runtime
TABLE_NAMES = ("text_emb", "text_pos_emb", "speech_emb", "speech_pos_emb")


def table_file(name: str) -> str:
    return f"{name}.npy"


def load_tables(folder: Path) -> dict[str, np.ndarray]:
    """The embedding tables export wrote beside the graphs: name -> float32 [entries, hidden]."""
    return {name: np.load(Path(folder) / table_file(name)) for name in TABLE_NAMES}


class OnnxT3Conditioning:
    """lm_conditioning.onnx: speaker_emb [B, 256], prompt_speech_tokens [B, P], exaggeration [B, 1]
    -> cond_embeds [B, 34, hidden] (T3.prepare_conditioning)."""

    def __init__(self, path: Path, threads: int | None = None):
        self._session = open_session(path, threads)

    def __call__(self, speaker_emb, prompt_speech_tokens, exaggeration) -> np.ndarray:
        return self._session.run([T.COND_EMBEDS], {
            T.SPEAKER_EMB: np.asarray(speaker_emb, np.float32),
            T.PROMPT_SPEECH_TOKENS: np.asarray(prompt_speech_tokens, np.int64),
            T.EXAGGERATION: np.asarray(exaggeration, np.float32)})[0]


class OnnxT3LanguageModel(OnnxLmStep):
    """lm_step.onnx, the Chatterbox family's LM step on ONNX Runtime: inputs_embeds float32 [R, W, D] (the family
    embeds), positions / logit_index int64 [R], past_* [L, R, H, P, Dh] -> logits float32 [R, 8194], new keys and
    values [L, R, H, W, Dh]."""

    FIRST_INPUT = T.INPUTS_EMBEDS
