"""Export a Chatterbox checkpoint (T3 LM + S3Gen flow and HiFT + voice encoder) into a model repository.

    python -m tritone.export chatterbox --checkpoint ResembleAI/chatterbox --out model_repository
    python -m tritone.export chatterbox --checkpoint tiny-random --out model_repository

Reads the checkpoint's ve.safetensors, t3_cfg.safetensors, s3gen.safetensors, tokenizer.json and
conds.pt (its built-in voice), through the reference package (export/chatterbox/reference.py), and
writes, each graph checked against the package's own computation:
    chatterbox/1/lm_step.onnx, lm_conditioning.onnx, *_emb.npy    T3 (export/chatterbox/lm.py)
    chatterbox_voice/1/model.onnx                                 a clip -> its voice (export/chatterbox/voice.py)
    chatterbox_flow/1/model.onnx, chatterbox_vocoder/1/model.onnx tokens -> mel -> audio (export/chatterbox/flow.py)
    chatterbox/1/tokenizer.json, voices/default.npz, chatterbox.json (and checkpoint/ for the random checkpoints)
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import torch

from tritone.ensemble import tensors as T
from tritone.ensemble.chatterbox.metadata import (BUILTIN_VOICE, CHECKPOINT_DIR, TOKENIZER_FILE, VOICES_DIR,
                                                  ChatterboxMetadata)
from tritone.ensemble.chatterbox.onnx_lm import CONDITIONING_FILE, LM_STEP_FILE
from tritone.ensemble.chatterbox.voice import Voice
from tritone.export.checkpoints import ensure_available

DEFAULT_CHECKPOINT = "ResembleAI/chatterbox"
CHECKPOINT_FILES = ("ve.safetensors", "t3_cfg.safetensors", "s3gen.safetensors", "tokenizer.json", "conds.pt")
RANDOM_CHECKPOINTS = {"tiny-random": "tiny", "small-random": "small"}
HINT = "--checkpoint tiny-random (random weights of the real architecture)"


def graph_paths(out: Path) -> list[Path]:
    """What a complete export holds; chatterbox_codec's version folder is empty (an ensemble's: Triton needs one)."""
    out = Path(out)
    return [out / T.CHATTERBOX / "1" / LM_STEP_FILE, out / T.CHATTERBOX / "1" / CONDITIONING_FILE,
            out / T.CHATTERBOX_VOICE / "1" / T.ONNX_FILE, out / T.CHATTERBOX_FLOW / "1" / T.ONNX_FILE,
            out / T.CHATTERBOX_VOCODER / "1" / T.ONNX_FILE, out / T.CHATTERBOX_CODEC / "1"]


def exported(checkpoint: str, out: Path) -> ChatterboxMetadata | None:
    """The repository's Chatterbox export if it is complete and came from `checkpoint`."""
    try:
        model = ChatterboxMetadata.load(Path(out) / T.CHATTERBOX / "1")
    except (OSError, ValueError, TypeError):
        return None
    complete = all(path.exists() for path in graph_paths(out))
    return model if complete and model.checkpoint == checkpoint else None


def checkpoint_folder(checkpoint: str, version: Path) -> Path:
    """A folder holding the checkpoint's files: a random one written under chatterbox/1/checkpoint, a local
    folder, the hub cache, or the hub."""
    if checkpoint in RANDOM_CHECKPOINTS:
        from tritone.export.chatterbox.tiny import write_random_checkpoint

        folder = version / CHECKPOINT_DIR
        write_random_checkpoint(folder, RANDOM_CHECKPOINTS[checkpoint])
        return folder
    local = ensure_available(checkpoint, "Chatterbox checkpoint", HINT)
    if local is not None:
        return Path(local)
    from huggingface_hub import hf_hub_download

    return Path([hf_hub_download(checkpoint, name) for name in CHECKPOINT_FILES][0]).parent


def builtin_voice(tts) -> Voice:
    """The checkpoint's conds.pt as a Voice (its T3 and S3Gen conditionals)."""
    t3, gen = tts.conds.t3, tts.conds.gen
    flat = lambda tensor: tensor.detach().reshape(-1).numpy()  # noqa: E731
    tokens = int(flat(gen["prompt_token_len"])[0]) if gen.get("prompt_token_len") is not None else None
    prompt_tokens = flat(gen["prompt_token"])[:tokens]
    return Voice.from_arrays({
        T.SPEAKER_EMB: flat(t3.speaker_emb),
        T.PROMPT_SPEECH_TOKENS: flat(t3.cond_prompt_speech_tokens),
        T.PROMPT_TOKENS: prompt_tokens,
        T.PROMPT_MEL: gen["prompt_feat"][0, : 2 * len(prompt_tokens)].detach().numpy(),
        T.XVECTOR: flat(gen["embedding"]),
    })


def describe(tts, checkpoint: str, voices: tuple[str, ...]) -> ChatterboxMetadata:
    hp, config = tts.t3.hp, tts.t3.cfg
    return ChatterboxMetadata(
        checkpoint=checkpoint, sample_rate=int(tts.sr), token_rate=25, frame_samples=int(tts.sr) // 25,
        speech_codes=hp.start_speech_token, speech_vocab=hp.speech_tokens_dict_size,
        start_speech=hp.start_speech_token, stop_speech=hp.stop_speech_token, text_vocab=hp.text_tokens_dict_size,
        start_text=hp.start_text_token, stop_text=hp.stop_text_token, max_text_tokens=hp.max_text_tokens,
        max_speech_tokens=hp.max_speech_tokens, num_layers=config.num_hidden_layers,
        num_kv_heads=config.num_key_value_heads,
        head_dim=getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads,
        hidden_size=config.hidden_size, speaker_embed_size=hp.speaker_embed_size,
        xvector_size=tts.s3gen.flow.spk_embed_affine_layer.in_features, mel_bins=tts.s3gen.flow.output_size,
        prompt_tokens=hp.speech_cond_prompt_len, voices=voices,
    )


def export_chatterbox(checkpoint: str = DEFAULT_CHECKPOINT, out: Path = Path("model_repository"),
                      force: bool = False) -> ChatterboxMetadata:
    """Export T3, the voice model, the flow and the vocoder; the checkpoint's conds.pt is the built-in voice."""
    from tritone.export.chatterbox.flow import export_flow, export_vocoder
    from tritone.export.chatterbox.lm import export_lm
    from tritone.export.chatterbox.reference import load_reference
    from tritone.export.chatterbox.voice import export_voice

    started = time.perf_counter()
    out = Path(out)
    if not force and (current := exported(checkpoint, out)) is not None:
        print(f"{out} already holds an export of {checkpoint} (--force to export again)")
        return current
    version = out / T.CHATTERBOX / "1"
    version.mkdir(parents=True, exist_ok=True)
    print(f"loading {checkpoint} ...")
    folder = checkpoint_folder(checkpoint, version)
    tts = load_reference(folder)
    print(f"  loaded in {time.perf_counter() - started:.1f}s: T3 {sum(p.numel() for p in tts.t3.parameters()) / 1e6:.1f}M, "
          f"S3Gen {sum(p.numel() for p in tts.s3gen.parameters()) / 1e6:.1f}M, voice encoder "
          f"{sum(p.numel() for p in tts.ve.parameters()) / 1e6:.1f}M parameters")
    for what, export, target in (("T3 (LM step, conditioning, tables)", export_lm, version),
                                 ("the voice model", export_voice, out / T.CHATTERBOX_VOICE / "1"),
                                 ("the flow", export_flow, out / T.CHATTERBOX_FLOW / "1"),
                                 ("the vocoder", export_vocoder, out / T.CHATTERBOX_VOCODER / "1")):
        print(f"exporting {what} ...")
        target.mkdir(parents=True, exist_ok=True)
        with torch.no_grad():  # the parity checks run the reference's modules: no autograd graph for them
            export(tts, target)
    (out / T.CHATTERBOX_CODEC / "1").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(folder / TOKENIZER_FILE, version / TOKENIZER_FILE)
    voices: tuple[str, ...] = ()
    if tts.conds is not None:
        (version / VOICES_DIR).mkdir(exist_ok=True)
        builtin_voice(tts).save(version / VOICES_DIR / f"{BUILTIN_VOICE}.npz")
        voices = (BUILTIN_VOICE,)
    model = describe(tts, checkpoint, voices)
    model.save(version)
    print(f"exported {checkpoint} to {out} in {time.perf_counter() - started:.0f}s ({model.sample_rate} Hz, "
          f"{model.token_rate} speech tokens/s, voices {', '.join(voices) or 'none'})")
    return model

