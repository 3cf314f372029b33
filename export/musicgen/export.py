"""Export a MusicGen checkpoint into a servable model repository.

    python -m tritone.export musicgen --checkpoint facebook/musicgen-small --out model_repository
    python -m tritone.export musicgen --checkpoint tiny-random --out model_repository

Writes, each checked against the torch module:
    musicgen_text_encoder/1/model.onnx    T5 encoder (+ projection)       [batch, tokens]
    musicgen_codec_decoder/1/model.onnx   EnCodec decoder                 [batch, codebooks, frames]
    musicgen/1/lm_cross_kv.onnx           cross-attention K/V per request
    musicgen/1/lm_step.onnx               one in-flight-batched decode step
    musicgen_tokenizer/1/tokenizer/       the prompt tokenizer (the musicgen_tokenizer model's files)
    musicgen/1/musicgen.json              (and checkpoint/ for tiny-random)
    musicgen_text_conditioning/1/         empty: an ensemble's version folder (Triton loads no model without one)
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import torch

from tritone.ensemble import tensors as T
from tritone.ensemble.musicgen.metadata import (
    CHECKPOINT_DIR,
    LM_CROSS_KV_FILE,
    LM_STEP_FILE,
    TOKENIZER_DIR,
    MusicgenMetadata,
)
from tritone.export.checkpoints import CheckpointUnavailable  # noqa: F401 (raised from here)
from tritone.export.checkpoints import load_checkpoint as load_checkpoint_from
from tritone.ensemble.musicgen.graphs import CodecDecoder, CrossKV, LmStep, TextEncoder
from tritone.export.onnx_graph import export_graph
from tritone.ensemble.musicgen.spec import MODELS
from tritone.ensemble.musicgen.text_conditioning import tokenizer_dir as tokenizer_dir_of
from tritone.export.musicgen.tiny import RANDOM_CHECKPOINTS, TINY_RANDOM, save_random

DEFAULT_CHECKPOINT = "facebook/musicgen-small"


def _from_pretrained(source: str):
    from transformers import AutoTokenizer, MusicgenForConditionalGeneration

    model = MusicgenForConditionalGeneration.from_pretrained(source, attn_implementation="eager")
    return model.eval(), AutoTokenizer.from_pretrained(source)


def load_checkpoint(checkpoint: str, out: Path):
    """Load model and tokenizer: a directory, the local hub cache, then the hub itself.

    tiny-random and small-random are built and saved under musicgen/1/checkpoint first."""
    if checkpoint in RANDOM_CHECKPOINTS:
        return _from_pretrained(str(save_random(out / T.MUSICGEN / "1" / CHECKPOINT_DIR, size=checkpoint)))
    return load_checkpoint_from(
        checkpoint, _from_pretrained, "MusicGen checkpoint",
        f"tiny-random (random weights of the real architecture): make serve MODEL={TINY_RANDOM}",
    )


def describe(model, tokenizer, checkpoint: str) -> MusicgenMetadata:
    decoder = model.decoder.config
    codec = model.audio_encoder.config
    hop = 1
    for ratio in codec.upsampling_ratios:
        hop *= ratio
    return MusicgenMetadata(
        checkpoint=checkpoint,
        sample_rate=codec.sampling_rate,
        frame_rate=codec.sampling_rate // hop,
        hop_length=hop,
        num_codebooks=decoder.num_codebooks,
        codebook_size=decoder.vocab_size,
        pad_token_id=model.generation_config.pad_token_id,
        num_layers=decoder.num_hidden_layers,
        num_heads=decoder.num_attention_heads,
        head_dim=decoder.hidden_size // decoder.num_attention_heads,
        hidden_size=decoder.hidden_size,
        max_positions=decoder.max_position_embeddings,
        text_vocab_size=len(tokenizer),
    )


def ensemble_versions(out: Path) -> list[Path]:
    """The version folders of the family's ensembles: they hold nothing, but Triton needs one to load the model."""
    return [Path(out) / spec.name / "1" for spec in MODELS if spec.steps]


def exported(checkpoint: str, out: Path) -> MusicgenMetadata | None:
    """The repository's MusicGen export if it is complete and came from `checkpoint`."""
    version = Path(out) / T.MUSICGEN / "1"
    graphs = [version / LM_STEP_FILE, version / LM_CROSS_KV_FILE,
              Path(out) / T.MUSICGEN_TEXT_ENCODER / "1" / T.ONNX_FILE, Path(out) / T.MUSICGEN_CODEC_DECODER / "1" / T.ONNX_FILE,
              tokenizer_dir_of(out), *ensemble_versions(out)]
    try:
        spec = MusicgenMetadata.load(version)
    except (OSError, ValueError, TypeError):
        return None
    return spec if spec.checkpoint == checkpoint and all(g.exists() for g in graphs) else None


def export_musicgen(checkpoint: str, out: Path, force: bool = False) -> MusicgenMetadata:
    started = time.perf_counter()
    out = Path(out)
    if not force and (current := exported(checkpoint, out)) is not None:
        print(f"{out} already holds an export of {checkpoint} (--force to export again)")
        return current
    print(f"loading {checkpoint} ...")
    model, tokenizer = load_checkpoint(checkpoint, out)
    spec = describe(model, tokenizer, checkpoint)
    pipeline_dir = out / T.MUSICGEN / "1"
    pipeline_dir.mkdir(parents=True, exist_ok=True)

    gen = torch.Generator().manual_seed(0)
    tokens = tokenizer(["lo-fi piano with rain", "drums"], padding=True, return_tensors="pt")
    ids, mask = tokens["input_ids"], tokens["attention_mask"]
    print("exporting text encoder ...")
    export_graph(
        TextEncoder(model),
        {T.INPUT_IDS: ids, T.ATTENTION_MASK: mask},
        [T.ENCODER_HIDDEN_STATES],
        {T.INPUT_IDS: {0: "batch", 1: "tokens"}, T.ATTENTION_MASK: {0: "batch", 1: "tokens"},
         T.ENCODER_HIDDEN_STATES: {0: "batch", 1: "tokens"}},
        out / T.MUSICGEN_TEXT_ENCODER / "1" / T.ONNX_FILE,
    )

    with torch.no_grad():
        hidden = TextEncoder(model)(ids, mask)
    rows = 3
    hidden = torch.cat([hidden, torch.zeros_like(hidden[:1])])  # cond, cond, unconditional
    enc_mask = torch.cat([mask, torch.zeros_like(mask[:1])])
    print("exporting LM cross-attention K/V ...")
    export_graph(
        CrossKV(model),
        {T.ENCODER_HIDDEN_STATES: hidden},
        [T.CROSS_KEYS, T.CROSS_VALUES],
        {T.ENCODER_HIDDEN_STATES: {0: "rows", 1: "tokens"},
         T.CROSS_KEYS: {1: "rows", 3: "tokens"}, T.CROSS_VALUES: {1: "rows", 3: "tokens"}},
        pipeline_dir / LM_CROSS_KV_FILE,
    )

    with torch.no_grad():
        cross_keys, cross_values = CrossKV(model)(hidden)
    past = 5
    cache_shape = (spec.num_layers, rows, spec.num_heads, past, spec.head_dim)
    print("exporting LM decode step ...")
    export_graph(
        LmStep(model),
        {
            T.CODE_IDS: torch.randint(0, spec.codebook_size + 1, (rows, spec.num_codebooks), generator=gen),
            T.POSITIONS: torch.tensor([5, 2, 0]),  # rows at different positions share the step
            T.PAST_KEYS: torch.randn(cache_shape, generator=gen),
            T.PAST_VALUES: torch.randn(cache_shape, generator=gen),
            T.CROSS_KEYS: cross_keys,
            T.CROSS_VALUES: cross_values,
            T.ENCODER_MASK: enc_mask,
        },
        [T.LOGITS, T.NEW_KEYS, T.NEW_VALUES],
        {T.CODE_IDS: {0: "rows"}, T.POSITIONS: {0: "rows"},
         T.PAST_KEYS: {1: "rows", 3: "past"}, T.PAST_VALUES: {1: "rows", 3: "past"},
         T.CROSS_KEYS: {1: "rows", 3: "tokens"}, T.CROSS_VALUES: {1: "rows", 3: "tokens"},
         T.ENCODER_MASK: {0: "rows", 1: "tokens"},
         T.LOGITS: {0: "rows"}, T.NEW_KEYS: {1: "rows"}, T.NEW_VALUES: {1: "rows"}},
        pipeline_dir / LM_STEP_FILE,
    )

    print("exporting codec decoder ...")
    export_graph(
        CodecDecoder(model),
        {T.AUDIO_CODES: torch.randint(0, spec.codebook_size, (2, spec.num_codebooks, 12), generator=gen)},
        [T.AUDIO],
        {T.AUDIO_CODES: {0: "batch", 2: "frames"}, T.AUDIO: {0: "batch", 1: "samples"}},
        out / T.MUSICGEN_CODEC_DECODER / "1" / T.ONNX_FILE,
        tolerance=1e-3,
    )

    tokenizer_dir = tokenizer_dir_of(out)
    shutil.rmtree(tokenizer_dir, ignore_errors=True)
    shutil.rmtree(pipeline_dir / TOKENIZER_DIR, ignore_errors=True)  # where exports before the tokenizer model kept it
    tokenizer.save_pretrained(tokenizer_dir)
    for version in ensemble_versions(out):
        version.mkdir(parents=True, exist_ok=True)
    spec.save(pipeline_dir)
    print(f"exported {checkpoint} to {out} in {time.perf_counter() - started:.0f}s "
          f"({spec.sample_rate} Hz, {spec.frame_rate} frames/s, {spec.num_codebooks} codebooks)")
    return spec
