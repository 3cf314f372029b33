"""Torch modules that become the speech family's ONNX graphs.

They reuse the weights of transformers' `LlamaForCausalLM` and of `snac.SNAC`, and compute
what those compute, rearranged for serving:

- `OrpheusLmStep`: one step of the decoder-only LM in which every row feeds `width` tokens from
  its own position: token embedding + the shared Llama step (ensemble/llama_step.py) + lm_head.
  One graph serves chunked prefill (width 16..64) and decode (width 1), and rows at different
  positions share a call (in-flight batching).
- `SnacEncoder`: waveform -> codes in the Orpheus frame layout (reference clips for cloning).
- `SnacDecoder`: codes in the frame layout -> waveform, with SNAC's noise injection off
  (`deterministic_decoder`), so that a stream decoded in overlapping windows equals a one-shot
  decode and a request's audio depends only on its codes.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from tritone.ensemble.llama_step import LlamaStep
from tritone.ensemble.orpheus.format import FRAME_LEVELS, FRAME_OFFSETS, LEVEL_CODES, TOKENS_PER_FRAME

# Frames of context a window of SNAC (24 kHz) codes needs on each side for its middle to equal
# a one-shot decode (max |difference| < 1e-4; 1e-7 from there on). The decoder is
# convolutional with no attention and, noise off, sees about 2.5 frames either way; measured
# on the tiny and on the snac_24khz architecture (tests/unit/test_orpheus_export.py): with 2
# frames the error is ~1.5e-4, with 1 ~8e-3. A stream's first and last windows need no
# context on their outer side: the decoder zero-pads there as a one-shot decode does.
DECODER_LEFT_CONTEXT_FRAMES = 3
DECODER_LOOKAHEAD_FRAMES = 3


# --- the LM -----------------------------------------------------------------------------
class OrpheusLmStep(nn.Module):
    """input_ids [R, W], positions [R], logit_index [R], past_* [L, R, KVH, P, Dh]
    -> logits [R, V], new_keys / new_values [L, R, KVH, W, Dh].

    The token embedding, then the shared Llama step (ensemble/llama_step.py: per-row positions, the
    padded cache masked by position, keys cached after the rotary embedding, grouped-query attention,
    only token logit_index[r] through the final norm), then lm_head: the graph never builds a
    [R, W, vocab] tensor (vocab is 156940 for Orpheus).

    Tied embeddings (Orpheus 3B, as Llama 3.2): the graph holds the matrix once, as lm_head's
    [hidden, vocab] operand, and embeds by gathering its columns. Used as-is, the exporter
    would fold lm_head's transpose into a second copy (+1.9 GB for Orpheus 3B).
    """

    def __init__(self, model):
        super().__init__()
        llama = model.model
        self.llama = LlamaStep(llama, model.config)
        if model.lm_head.weight is llama.embed_tokens.weight:
            self.embed_tokens = self.lm_head = None
            # a view of the shared weight, [hidden, vocab]: no copy in torch, one initializer in ONNX
            self.output_embedding = nn.Parameter(llama.embed_tokens.weight.t(), requires_grad=False)
        else:
            self.embed_tokens, self.lm_head, self.output_embedding = llama.embed_tokens, model.lm_head, None

    def forward(self, input_ids, positions, logit_index, past_keys, past_values):
        rows, width = input_ids.shape
        hidden = self._embed(input_ids, rows, width)  # [R, W, D]
        last, new_keys, new_values = self.llama(hidden, positions, logit_index, past_keys, past_values)
        return self._lm_head(last).float(), new_keys, new_values  # logits [R, V]

    def _embed(self, input_ids, rows, width):
        if self.output_embedding is None:
            return self.embed_tokens(input_ids)
        if not torch.onnx.is_in_onnx_export():  # eager: rows of the contiguous [vocab, hidden] weight, no copy
            return self.output_embedding.t().index_select(0, input_ids.reshape(-1)).reshape(rows, width, -1)
        # exported: one Gather on the [hidden, vocab] initializer the head shares (index_select on this view in
        # eager torch would copy the whole matrix every step)
        columns = self.output_embedding.index_select(1, input_ids.reshape(-1))  # [D, R * W]
        return columns.t().reshape(rows, width, -1)

    def _lm_head(self, hidden):
        if self.output_embedding is None:
            return self.lm_head(hidden)
        return torch.matmul(hidden, self.output_embedding)


# --- SNAC -------------------------------------------------------------------------------
def frame_samples(snac) -> int:
    """Samples per 7-token frame: the hop times the coarsest level's stride (512 x 4 = 2048)."""
    return int(snac.hop_length) * int(snac.vq_strides[0])


def _upsample(x: torch.Tensor, stride: int) -> torch.Tensor:
    # [B, C, T] -> [B, C, T * stride], each step repeated (repeat_interleave, in shape-agnostic ops)
    if stride == 1:
        return x
    return x[..., None].expand(-1, -1, -1, stride).flatten(2)


class SnacEncoder(nn.Module):
    """audio [B, S] float32 -> codes [B, 7, F] int64 in the Orpheus frame layout.

    S is padded on the right with zeros to a whole number of frames, as `SNAC.preprocess`
    does (to a multiple of the local-attention window too, for SNAC variants that have one),
    so F = ceil(S / 2048) for snac_24khz. The residual quantizer is SNAC's own arithmetic,
    written with ops whose shapes stay symbolic in the exported graph (einops' rearrange and
    repeat_interleave would bake the export's batch and length in).
    """

    def __init__(self, snac):
        super().__init__()
        self.encoder = snac.encoder
        self.quantizers = snac.quantizer.quantizers
        self.pad_to = int(snac.hop_length) * math.lcm(int(snac.vq_strides[0]), int(snac.attn_window_size or 1))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        batch, samples = audio.shape
        blocks = torch.div(samples + self.pad_to - 1, self.pad_to, rounding_mode="floor")
        padded = torch.cat([audio, audio.new_zeros(batch, self.pad_to - 1)], dim=1)[:, : blocks * self.pad_to]
        residual = self.encoder(padded[:, None, :])  # [B, latent, T]
        levels = []
        for quantizer in self.quantizers:
            z = residual
            if quantizer.stride > 1:
                z = F.avg_pool1d(z, quantizer.stride, quantizer.stride)
            z_e = quantizer.in_proj(z)  # [B, Dc, T / stride]
            encodings = F.normalize(z_e.transpose(1, 2), dim=-1)  # [B, T', Dc]
            codebook = F.normalize(quantizer.codebook.weight, dim=1)  # [N, Dc]
            dist = (encodings.pow(2).sum(-1, keepdim=True) - 2 * torch.matmul(encodings, codebook.t())
                    + codebook.pow(2).sum(1)[None, None, :])  # as SNAC's decode_latents
            indices = torch.argmax(-dist, dim=-1)  # [B, T']
            levels.append(indices)
            z_q = quantizer.out_proj(F.embedding(indices, quantizer.codebook.weight).transpose(1, 2))
            residual = residual - _upsample(z_q, quantizer.stride)
        return levels_to_frame(levels)


def levels_to_frame(levels) -> torch.Tensor:
    """SNAC's levels [B, F], [B, 2F], [B, 4F] -> [B, 7, F] (torch twin of orpheus_format's)."""
    batch = levels[0].shape[0]
    per_frame = [level.reshape(batch, -1, count) for level, count in zip(levels, LEVEL_CODES)]  # [B, F, count]
    rows = [per_frame[level][:, :, offset] for level, offset in zip(FRAME_LEVELS, FRAME_OFFSETS)]
    return torch.stack(rows, dim=1)


def frame_to_levels(codes: torch.Tensor) -> list[torch.Tensor]:
    """[B, 7, F] -> SNAC's levels [B, F], [B, 2F], [B, 4F] (torch twin of orpheus_format's)."""
    levels = []
    for level in range(len(LEVEL_CODES)):
        rows = [k for k in range(TOKENS_PER_FRAME) if FRAME_LEVELS[k] == level]  # in offset order
        levels.append(torch.stack([codes[:, k] for k in rows], dim=-1).flatten(1))
    return levels


def deterministic_decoder(snac) -> nn.Sequential:
    """SNAC's decoder with its NoiseBlocks left out, sharing the codec's weights.

    A NoiseBlock adds randn(B, 1, T) scaled by a learned 1x1 conv of its input: dither that
    makes two decodes of the same codes differ. Served audio must not: a stream is decoded in
    overlapping windows, and its chunks must join into what one decode of all the codes gives,
    which only holds if the decoder is a function of its input. Dropping the block is
    `x + 0 * h`: the noise term at zero, the rest untouched. The codec itself is not modified.
    """
    from snac.layers import DecoderBlock, NoiseBlock

    layers = []
    for layer in snac.decoder.model:
        if isinstance(layer, DecoderBlock):
            layer = nn.Sequential(*[nn.Identity() if isinstance(m, NoiseBlock) else m for m in layer.block])
        layers.append(layer)
    return nn.Sequential(*layers)


class SnacDecoder(nn.Module):
    """codes [B, 7, F] int64 (Orpheus frame layout) -> audio [B, F * 2048] float32, noise off."""

    def __init__(self, snac):
        super().__init__()
        self.quantizers = snac.quantizer.quantizers
        self.decoder = deterministic_decoder(snac)

    def forward(self, audio_codes: torch.Tensor) -> torch.Tensor:
        z_q = 0.0
        for quantizer, codes in zip(self.quantizers, frame_to_levels(audio_codes)):
            z = quantizer.out_proj(F.embedding(codes, quantizer.codebook.weight).transpose(1, 2))
            z_q = z_q + _upsample(z, quantizer.stride)
        return self.decoder(z_q)[:, 0]
