"""Torch modules that become MusicGen's ONNX graphs.

They reuse the weights of transformers' `MusicgenForConditionalGeneration` and compute what
its `generate()` computes, rearranged for serving:

- `TextEncoder`: T5 encoder, projection to the decoder width, padding zeroed (as MusicGen's
  forward does with `encoder_hidden_states * attention_mask`).
- `CrossKV`: the cross-attention keys/values of every decoder layer, computed once per request.
- `LmStep`: one decode step for rows that may sit at *different* positions, so one batch can
  serve requests that joined at different times (in-flight batching). Each row carries its own
  position; its self-attention cache is padded to the longest row and masked by that position.
- `CodecDecoder`: EnCodec codes -> waveform.
"""

from __future__ import annotations

import torch
from torch import nn


class TextEncoder(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.encoder = model.text_encoder
        self.proj = getattr(model, "enc_to_dec_proj", None)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # input_ids, attention_mask: [B, E]
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.proj is not None:
            hidden = self.proj(hidden)
        return hidden * attention_mask[..., None].to(hidden.dtype)  # [B, E, D]


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    # [R, T, D] -> [R, H, T, Dh]
    rows, steps, width = x.shape
    return x.view(rows, steps, heads, width // heads).transpose(1, 2)


class CrossKV(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.layers = model.decoder.model.decoder.layers
        self.heads = model.decoder.config.num_attention_heads

    def forward(self, encoder_hidden_states: torch.Tensor):
        # encoder_hidden_states: [R, E, D] -> keys, values: [L, R, H, E, Dh]
        keys = [_split_heads(layer.encoder_attn.k_proj(encoder_hidden_states), self.heads) for layer in self.layers]
        values = [_split_heads(layer.encoder_attn.v_proj(encoder_hidden_states), self.heads) for layer in self.layers]
        return torch.stack(keys), torch.stack(values)


def _attend(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor, scale: float):
    # query: [R, H, 1, Dh]; keys, values: [R, H, T, Dh]; bias: [R, 1, 1, T] -> [R, 1, H*Dh]
    weights = torch.softmax(torch.matmul(query, keys.transpose(2, 3)) * scale + bias, dim=-1)
    if weights.dtype != values.dtype:  # bf16/fp16 on torch: bias is float32, so the softmax ran in float32
        weights = weights.to(values.dtype)
    out = torch.matmul(weights, values)  # [R, H, 1, Dh]
    return out.transpose(1, 2).reshape(out.shape[0], 1, -1)


class LmStep(nn.Module):
    def __init__(self, model):
        super().__init__()
        decoder = model.decoder.model.decoder
        self.embed_tokens = decoder.embed_tokens
        self.register_buffer("position_table", decoder.embed_positions.weights.clone(), persistent=False)
        self.layers = decoder.layers
        self.layer_norm = decoder.layer_norm
        self.lm_heads = model.decoder.lm_heads
        self.heads = model.decoder.config.num_attention_heads

    def forward(self, code_ids, positions, past_keys, past_values, cross_keys, cross_values, encoder_mask):
        # code_ids: [R, K]; positions: [R]; past_*: [L, R, H, P, Dh]; cross_*: [L, R, H, E, Dh]; encoder_mask: [R, E]
        rows = code_ids.shape[0]
        hidden = sum(embed(code_ids[:, k]) for k, embed in enumerate(self.embed_tokens))  # [R, D]
        hidden = (hidden + self.position_table[positions])[:, None, :]  # [R, 1, D]

        neg = torch.finfo(hidden.dtype).min
        past = torch.arange(past_keys.shape[3], device=code_ids.device)
        past_valid = past[None, :] < positions[:, None]  # [R, P]
        self_valid = torch.cat([past_valid, torch.ones(rows, 1, dtype=torch.bool, device=code_ids.device)], dim=1)
        self_bias = torch.where(self_valid, 0.0, neg)[:, None, None, :]  # [R, 1, 1, P+1]
        cross_bias = torch.where(encoder_mask > 0, 0.0, neg)[:, None, None, :]  # [R, 1, 1, E]

        new_keys, new_values = [], []
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn
            normed = layer.self_attn_layer_norm(hidden)
            query = _split_heads(attn.q_proj(normed), self.heads)  # [R, H, 1, Dh]
            key = _split_heads(attn.k_proj(normed), self.heads)
            value = _split_heads(attn.v_proj(normed), self.heads)
            keys = torch.cat([past_keys[i], key], dim=2)  # [R, H, P+1, Dh]
            values = torch.cat([past_values[i], value], dim=2)
            hidden = hidden + attn.out_proj(_attend(query, keys, values, self_bias, attn.scaling))
            new_keys.append(key[:, :, 0])
            new_values.append(value[:, :, 0])

            cross = layer.encoder_attn
            query = _split_heads(cross.q_proj(layer.encoder_attn_layer_norm(hidden)), self.heads)
            hidden = hidden + cross.out_proj(_attend(query, cross_keys[i], cross_values[i], cross_bias, cross.scaling))

            normed = layer.final_layer_norm(hidden)
            hidden = hidden + layer.fc2(layer.activation_fn(layer.fc1(normed)))

        hidden = self.layer_norm(hidden)[:, 0]  # [R, D]
        logits = torch.stack([head(hidden) for head in self.lm_heads], dim=1)  # [R, K, V]
        return logits, torch.stack(new_keys), torch.stack(new_values)  # new_*: [L, R, H, Dh]


class CodecDecoder(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.codec = model.audio_encoder

    def forward(self, audio_codes: torch.Tensor) -> torch.Tensor:
        # audio_codes: [B, K, T] -> audio: [B, T * hop]
        embeddings = self.codec.quantizer.decode(audio_codes.transpose(0, 1))
        return self.codec.decoder(embeddings)[:, 0]
