"""Torch modules that become Chatterbox's LM graphs, over the weights of the package's `T3`.

- `T3LmStep`: one step of T3's Llama backbone in which every row feeds `width` input embeddings from its
  own position: the shared Llama step (ensemble/llama_step.py: per-row positions, padded cache masked by
  position, keys cached after the rotary embedding) + `speech_head`. T3 embeds its own inputs (text and
  speech tables + learned position tables, conditioning embeddings), so the graph takes embeddings, not
  ids: the family gathers rows of the tables export writes beside it (TABLES).
- `T3Conditioning`: what `T3.prepare_conditioning` computes: the speaker projection, the perceiver over
  the prompt's speech embeddings (speech_emb + speech_pos_emb) and the emotion token, [B, 1 + 32 + 1, D].
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from tritone.ensemble.llama_step import LlamaStep

# the embedding tables the family gathers from, by the name of the T3 weight each one is
TABLES = {
    "text_emb": "text_emb.weight",  # [text vocabulary, D]
    "text_pos_emb": "text_pos_emb.emb.weight",  # [max text tokens + 2, D]
    "speech_emb": "speech_emb.weight",  # [8194, D]
    "speech_pos_emb": "speech_pos_emb.emb.weight",  # [max speech tokens + 4, D]
}


def _check_llama(t3) -> None:
    if getattr(t3, "is_gpt", False) or t3.hp.input_pos_emb != "learned":
        raise ValueError("T3 graphs need a Llama backbone with learned position embeddings (Chatterbox's T3); "
                         f"got is_gpt={getattr(t3, 'is_gpt', None)}, input_pos_emb={t3.hp.input_pos_emb!r}")


class T3LmStep(nn.Module):
    """inputs_embeds [R, W, D], positions [R], logit_index [R], past_* [L, R, KVH, P, Dh]
    -> logits [R, speech vocabulary] (float32), new_keys / new_values [L, R, KVH, W, Dh].

    Row r feeds embeddings at positions[r] .. positions[r] + W - 1 (rotary positions count every input
    from the row's first conditioning embedding, as T3's backbone does); only input logit_index[r]
    goes through the final norm and speech_head. Rows shorter than W are padded on the right.
    """

    def __init__(self, tfmr, config, speech_head):
        """tfmr: T3's transformers LlamaModel, config its LlamaConfig, speech_head its Linear (shared, not copied)."""
        super().__init__()
        self.llama = LlamaStep(tfmr, config)
        self.speech_head = speech_head

    @classmethod
    def of(cls, t3) -> "T3LmStep":
        _check_llama(t3)
        return cls(t3.tfmr, t3.cfg, t3.speech_head)

    def forward(self, inputs_embeds, positions, logit_index, past_keys, past_values):
        last, new_keys, new_values = self.llama(inputs_embeds, positions, logit_index, past_keys, past_values)
        return self.speech_head(last).float(), new_keys, new_values


class T3Conditioning(nn.Module):
    """speaker_emb [B, 256] float32, prompt_speech_tokens [B, P] int64 (P <= 150), exaggeration [B, 1] float32
    -> conditioning embeddings [B, 1 + 32 + 1, D] (speaker, perceiver, emotion): `T3.prepare_conditioning`."""

    def __init__(self, t3):
        super().__init__()
        _check_llama(t3)
        self.cond_enc = t3.cond_enc
        self.speech_emb = t3.speech_emb
        self.speech_pos = t3.speech_pos_emb.emb

    def forward(self, speaker_emb, prompt_speech_tokens, exaggeration):
        steps = torch.arange(prompt_speech_tokens.shape[1], device=prompt_speech_tokens.device)
        prompt = self.speech_emb(prompt_speech_tokens) + self.speech_pos(steps)[None]  # [B, P, D]
        # the fields of the package's T3Cond that cond_enc reads
        cond = SimpleNamespace(speaker_emb=speaker_emb, clap_emb=None, cond_prompt_speech_tokens=prompt_speech_tokens,
                               cond_prompt_speech_emb=prompt, emotion_adv=exaggeration)
        return self.cond_enc(cond)


def tables(t3) -> dict[str, torch.Tensor]:
    """The family's embedding tables, float32, by their TABLES name."""
    weights = dict(t3.named_parameters())
    return {name: weights[key].detach().float() for name, key in TABLES.items()}
