"""One serving step through the decoder layers of a transformers `LlamaModel`, for any family whose LM is
a Llama backbone (Orpheus feeds token ids through it, Chatterbox's T3 its own input embeddings): the
family embeds its inputs and projects the result onto its vocabulary; this module does what lies between.

Every row feeds `width` inputs from its own position, so one graph serves chunked prefill (width 16..64)
and decode (width 1), and rows at different positions share a call (in-flight batching). The cache is
padded to the longest row and masked by each row's position; keys are cached after the rotary embedding.

Grouped-query attention: the query heads are grouped under their key/value head ([R, KVH, G * W, Dh])
rather than the cache repeated G times per layer, which is the same arithmetic as transformers'
`repeat_kv` without copying the cache at every step.
"""

from __future__ import annotations

import torch
from torch import nn


class LlamaStep(nn.Module):
    """hidden [R, W, D] (embedded inputs), positions [R], logit_index [R], past_* [L, R, KVH, P, Dh]
    -> normed [R, D] (the final norm of token logit_index[r]), new_keys / new_values [L, R, KVH, W, Dh].

    Row r feeds inputs at positions[r] .. positions[r] + W - 1. It attends to its cache entries
    t < positions[r] (the rest of the padded cache is masked) and causally to its own new inputs.
    A row with fewer than W inputs is padded on the right by the caller: padding comes after the
    valid inputs, so it never affects them, and its outputs are ignored. Only the hidden state of
    input logit_index[r] goes through the final norm, so the caller's head never builds a
    [R, W, vocab] tensor.
    """

    def __init__(self, llama, config):
        """`llama`: a transformers LlamaModel (its layers, final norm and rotary embedding are shared, not copied)."""
        super().__init__()
        self.layers = llama.layers
        self.norm = llama.norm
        self.rotary_emb = llama.rotary_emb  # cos/sin from position ids, llama3 scaling included
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads

    def forward(self, hidden, positions, logit_index, past_keys, past_values):
        rows, width = hidden.shape[:2]
        kv_heads, dh = self.num_kv_heads, self.head_dim
        groups = self.num_heads // kv_heads
        device = hidden.device

        steps = torch.arange(width, device=device)
        position_ids = positions[:, None] + steps[None, :]  # [R, W]
        cos, sin = self.rotary_emb(hidden, position_ids)  # [R, W, Dh]
        cos, sin = cos[:, None], sin[:, None]  # [R, 1, W, Dh]

        past = torch.arange(past_keys.shape[3], device=device)
        past_valid = (past[None, :] < positions[:, None])[:, None, :].expand(rows, width, -1)  # [R, W, P]
        causal = (steps[None, :] <= steps[:, None])[None].expand(rows, -1, -1)  # [R, W, W]
        valid = torch.cat([past_valid, causal], dim=2)  # [R, W, P + W]
        bias = torch.where(valid, 0.0, torch.finfo(hidden.dtype).min)[:, None, None]  # [R, 1, 1, W, P + W]

        new_keys, new_values = [], []
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn
            normed = layer.input_layernorm(hidden)
            query = attn.q_proj(normed).view(rows, width, self.num_heads, dh).transpose(1, 2)  # [R, H, W, Dh]
            key = attn.k_proj(normed).view(rows, width, kv_heads, dh).transpose(1, 2)  # [R, KVH, W, Dh]
            value = attn.v_proj(normed).view(rows, width, kv_heads, dh).transpose(1, 2)
            query = query * cos + rotate_half(query) * sin
            key = key * cos + rotate_half(key) * sin
            new_keys.append(key)
            new_values.append(value)

            keys = torch.cat([past_keys[i], key], dim=2)  # [R, KVH, P + W, Dh]
            values = torch.cat([past_values[i], value], dim=2)
            grouped = query.reshape(rows, kv_heads, groups * width, dh)  # head h = kv head h // G
            scores = torch.matmul(grouped, keys.transpose(2, 3)) * attn.scaling  # [R, KVH, G * W, P + W]
            scores = scores.view(rows, kv_heads, groups, width, -1) + bias
            weights = torch.softmax(scores.float(), dim=-1).to(query.dtype).view(rows, kv_heads, groups * width, -1)
            out = torch.matmul(weights, values).view(rows, self.num_heads, width, dh)  # [R, H, W, Dh]
            out = out.transpose(1, 2).reshape(rows, width, self.num_heads * dh)
            hidden = hidden + attn.o_proj(out)
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))

        index = logit_index[:, None, None].expand(rows, 1, hidden.shape[-1])
        last = hidden.gather(1, index)[:, 0]  # [R, D]: RMSNorm is per token, so gather first
        return self.norm(last), torch.stack(new_keys), torch.stack(new_values)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)
