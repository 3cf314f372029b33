"""Export an Orpheus-format text-to-speech checkpoint (Llama LM + SNAC 24 kHz) into a model repository.

    python -m tritone.export orpheus --checkpoint canopylabs/orpheus-3b-0.1-ft --out model_repository
    python -m tritone.export orpheus --checkpoint tiny-random --out model_repository

Writes, each checked against the torch module:
    orpheus/1/lm_step.onnx            one LM step: chunked prefill and decode, rows at their own positions
    snac_encoder/1/model.onnx         waveform -> codes [batch, 7, frames] (reference clips)
    snac_decoder/1/model.onnx         codes [batch, 7, frames] -> waveform (noise off)
    orpheus/1/tokenizer/, speech.json (and checkpoint/ + codec/ for the random checkpoints)

The LM graph of a 3B checkpoint is about 13 GB in float32, past protobuf's 2 GB: its weights
then go to one external data file beside it (lm_step.onnx.data).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import torch

from tritone.ensemble import tensors as T
from tritone.ensemble.orpheus.format import LEVEL_CODES, TOKENS_PER_FRAME
from tritone.ensemble.orpheus.metadata import CHECKPOINT_DIR, CODEC_DIR, LM_STEP_FILE, TOKENIZER_DIR, OrpheusMetadata
from tritone.export.checkpoints import CheckpointUnavailable, ensure_available, load_checkpoint
from tritone.export.onnx_graph import (STEP_ROWS, STEP_WIDTH, export_graph, export_llm_step,  # noqa: F401
                                       gather_external_data)
from tritone.ensemble.orpheus.graphs import SnacDecoder, SnacEncoder, OrpheusLmStep, frame_samples
from tritone.ensemble.orpheus.spec import SPEAKERS
from tritone.export.orpheus.tiny import (
    BOS_TOKEN,
    EOT_TOKEN,
    RANDOM_CHECKPOINTS,
    TINY_RANDOM,
    orpheus_vocab_size,
    save_random_codec,
    save_random_lm,
)

__all__ = ["CheckpointUnavailable", "export_orpheus", "exported"]

DEFAULT_CHECKPOINT = "canopylabs/orpheus-3b-0.1-ft"
DEFAULT_CODEC = "hubertsiuzdak/snac_24khz"
ORPHEUS_VOICES = SPEAKERS  # orpheus-3b-0.1-ft's speakers, as its spec declares them
ONNX_FILE = T.ONNX_FILE
HINT = f"--checkpoint {TINY_RANDOM} (random weights of the real architecture)"


def default_codec(checkpoint: str) -> str:
    """A random LM comes with the random codec of its size; a trained one with snac_24khz."""
    return checkpoint if checkpoint in RANDOM_CHECKPOINTS else DEFAULT_CODEC


def _load_lm(source: str):
    from transformers import AutoTokenizer, LlamaForCausalLM

    # float32 whatever the checkpoint was saved in (Orpheus is bf16): the graph is exported in fp32
    model = LlamaForCausalLM.from_pretrained(source, attn_implementation="eager", dtype=torch.float32)
    return model.eval(), AutoTokenizer.from_pretrained(source)


def _load_codec(source: str):
    from snac import SNAC

    return SNAC.from_pretrained(source).eval()


def load_lm(checkpoint: str, out: Path):
    """(model, tokenizer): a random one saved under orpheus/1/checkpoint, a directory, the hub cache, the hub."""
    if checkpoint in RANDOM_CHECKPOINTS:
        return _load_lm(str(save_random_lm(Path(out) / T.ORPHEUS / "1" / CHECKPOINT_DIR, checkpoint)))
    return load_checkpoint(checkpoint, _load_lm, "Orpheus checkpoint", HINT)


def load_codec(codec: str, out: Path):
    if codec in RANDOM_CHECKPOINTS:
        return _load_codec(str(save_random_codec(Path(out) / T.ORPHEUS / "1" / CODEC_DIR, codec)))
    return load_checkpoint(codec, _load_codec, "SNAC codec", HINT)


def describe(model, tokenizer, snac, checkpoint: str, codec: str, voices=()) -> OrpheusMetadata:
    """The metadata the pipeline needs, with the Orpheus layout checked against LM, tokenizer and codec.

    text_vocab_size is not stored by Orpheus checkpoints (it is the constant tokeniser_length
    in its code); it follows from the layout: vocab = text + 10 + 7 x codebook + 2.
    """
    config = model.config
    strides = tuple(int(s) for s in snac.vq_strides)
    if tuple(strides[0] // s for s in strides) != LEVEL_CODES:
        raise ValueError(f"SNAC codec {codec!r} has level strides {strides}: the Orpheus frame needs "
                         f"{len(LEVEL_CODES)} levels at 1, 2 and 4 codes per frame")
    codebook = int(snac.codebook_size)
    text_vocab = config.vocab_size - orpheus_vocab_size(0, codebook)
    bos, eot = tokenizer.convert_tokens_to_ids(BOS_TOKEN), tokenizer.convert_tokens_to_ids(EOT_TOKEN)
    if text_vocab <= 0 or not all(isinstance(i, int) and 0 <= i < text_vocab for i in (bos, eot)):
        raise ValueError(
            f"{checkpoint!r} (vocabulary {config.vocab_size}) does not fit the Orpheus layout for codec {codec!r} "
            f"({codebook} codes per level): text tokens {text_vocab}, {BOS_TOKEN}={bos}, {EOT_TOKEN}={eot}")
    return OrpheusMetadata(
        checkpoint=checkpoint,
        codec_checkpoint=codec,
        sample_rate=int(snac.sampling_rate),
        frame_samples=frame_samples(snac),
        codebook_size=codebook,
        text_vocab_size=text_vocab,
        bos_token_id=bos,
        eot_token_id=eot,
        vocab_size=config.vocab_size,
        num_layers=config.num_hidden_layers,
        num_kv_heads=config.num_key_value_heads,
        head_dim=getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads,
        hidden_size=config.hidden_size,
        max_positions=config.max_position_embeddings,
        voices=tuple(voices),
    )


def graph_paths(out: Path) -> list[Path]:
    out = Path(out)
    return [out / T.ORPHEUS / "1" / LM_STEP_FILE, out / T.SNAC_ENCODER / "1" / ONNX_FILE,
            out / T.SNAC_DECODER / "1" / ONNX_FILE]


def exported(checkpoint: str, out: Path, codec: str | None = None) -> OrpheusMetadata | None:
    """The repository's speech export if it is complete and came from `checkpoint` and `codec`."""
    codec = codec or default_codec(checkpoint)
    version = Path(out) / T.ORPHEUS / "1"
    try:
        spec = OrpheusMetadata.load(version)
    except (OSError, ValueError, TypeError):
        return None
    complete = all(p.exists() for p in graph_paths(out)) and (version / TOKENIZER_DIR).is_dir()
    return spec if complete and spec.checkpoint == checkpoint and spec.codec_checkpoint == codec else None


def export_orpheus(checkpoint: str = DEFAULT_CHECKPOINT, out: Path = Path("model_repository"), codec: str | None = None,
                   force: bool = False, voices: tuple[str, ...] | None = None) -> OrpheusMetadata:
    """Export LM step, SNAC encoder and decoder; voices default to the checkpoint's speakers."""
    started = time.perf_counter()
    out = Path(out)
    codec = codec or default_codec(checkpoint)
    if not force and (current := exported(checkpoint, out, codec)) is not None:
        print(f"{out} already holds an export of {checkpoint} with {codec} (--force to export again)")
        return current
    if voices is None:
        voices = ORPHEUS_VOICES  # the random checkpoints take the same names, so clients work unchanged
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # the progress lines below say what happens
    print(f"loading {checkpoint} and {codec} ...")
    for source, what in ((checkpoint, "Orpheus checkpoint"), (codec, "SNAC codec")):
        if source not in RANDOM_CHECKPOINTS:  # both, before minutes of loading a 3B LM
            ensure_available(source, what, HINT)
    model, tokenizer = load_lm(checkpoint, out)
    snac = load_codec(codec, out)
    spec = describe(model, tokenizer, snac, checkpoint, codec, voices)
    version = out / T.ORPHEUS / "1"
    version.mkdir(parents=True, exist_ok=True)
    print(f"  loaded in {time.perf_counter() - started:.1f}s: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M "
          f"LM parameters, {sum(p.numel() for p in snac.parameters()) / 1e6:.1f}M codec parameters")

    gen = torch.Generator().manual_seed(0)
    print("exporting speech LM step ...")
    export_llm_step(OrpheusLmStep(model), T.INPUT_IDS,
                    torch.randint(0, spec.vocab_size, (STEP_ROWS, STEP_WIDTH), generator=gen),
                    (spec.num_layers, spec.num_kv_heads, spec.head_dim), version / LM_STEP_FILE, gen)

    encoder_path, decoder_path = graph_paths(out)[1:]
    print("exporting SNAC encoder ...")
    clip = 0.3 * torch.randn(2, int(1.3 * spec.sample_rate), generator=gen)  # not a whole number of frames
    export_graph(
        SnacEncoder(snac),
        {T.AUDIO: clip},
        [T.AUDIO_CODES],
        {T.AUDIO: {0: "batch", 1: "samples"}, T.AUDIO_CODES: {0: "batch", 2: "frames"}},
        encoder_path,
    )
    print("exporting SNAC decoder ...")
    export_graph(
        SnacDecoder(snac),
        {T.AUDIO_CODES: torch.randint(0, spec.codebook_size, (2, TOKENS_PER_FRAME, 12), generator=gen)},
        [T.AUDIO],
        {T.AUDIO_CODES: {0: "batch", 2: "frames"}, T.AUDIO: {0: "batch", 1: "samples"}},
        decoder_path,
    )

    tokenizer_dir = version / TOKENIZER_DIR
    shutil.rmtree(tokenizer_dir, ignore_errors=True)
    tokenizer.save_pretrained(tokenizer_dir)
    spec.save(version)
    print(f"exported {checkpoint} + {codec} to {out} in {time.perf_counter() - started:.0f}s ({spec.sample_rate} Hz, "
          f"{spec.frame_rate:.2f} frames/s = {spec.tokens_per_second:.0f} LM tokens/s, vocabulary {spec.vocab_size}, "
          f"voices {', '.join(spec.voices) or 'none'})")
    return spec
