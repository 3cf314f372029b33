"""Random-weight Chatterbox checkpoints in the released file layout: no hub needed.

`write_random_checkpoint(out_dir, size)` writes ve.safetensors, t3_cfg.safetensors,
s3gen.safetensors, tokenizer.json (an EnTokenizer vocabulary), conds.pt (a built-in voice) and
tritone_random.json (the sizes; `reference.load_reference` builds the models from it).

What serving depends on stays real whatever the size: the classes and state-dict keys, the
sample rates (16 kHz front-ends, 24 kHz audio), 25 Hz speech tokens and 50 Hz mels, the
vocabularies (704 text ids with [START] 255 / [STOP] 0, 6561 speech codes, 8194 speech
embeddings), the 256-d voice-encoder and 192-d x-vector speaker embeddings, the 150-token speech
prompt, the voice encoder and CAMPPlus themselves.

- "small": the released sizes (T3 on Llama_520M, the 6-layer 1280-wide S3 tokenizer, S3Gen's
  6+4-block 512-wide conformer, 256-channel estimator with 4 + 12 blocks, HiFT at 512).
- "tiny": the same classes narrowed so the whole pipeline runs in seconds on 2 cores (T3: 2
  Llama layers of 128, 4 heads, 2 KV heads; tokenizer: 1 layer of 128; conformer 1 + 4 blocks
  of 64; estimator [32] with 1 block and 1 mid block; HiFT at 64).

The built-in voice is computed as ChatterboxTTS.prepare_conditionals does, by the random models
themselves, from `synthetic_voice(seed)`: a deterministic voiced clip (harmonic syllables at a
gliding pitch, with silence around it).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch

SIZES = ("tiny", "small")
TEXT_VOCAB = 704  # T3Config.english_only().text_tokens_dict_size
START_TEXT, STOP_TEXT = 255, 0  # T3Config's start_text_token / stop_text_token: [START] / [STOP]
SPECIALS = ("[STOP]", "[UNK]", "[SPACE]", "[PAD]", "[SEP]", "[CLS]", "[MASK]")  # ids 0.. in this order
START = "[START]"
VOICE_SECONDS = 8.0
SAMPLE_RATE = 24000

DIMS = {
    "tiny": {
        "t3": {"text_tokens_dict_size": TEXT_VOCAB, "perceiver_heads": 4,
               "llama": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
                         "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32}},
        "s3gen": {"tokenizer": {"n_audio_state": 128, "n_audio_head": 2, "n_audio_layer": 1},  # head dim 64 (rotary)
                  "encoder": {"output_size": 64, "attention_heads": 4, "linear_units": 128, "num_blocks": 1},
                  "estimator": {"channels": [32], "attention_head_dim": 16, "n_blocks": 1, "num_mid_blocks": 1,
                                "num_heads": 2},
                  "hift": {"base_channels": 64, "f0_channels": 32}},
    },
    "small": {
        "t3": {"text_tokens_dict_size": TEXT_VOCAB, "perceiver_heads": 4,
               "llama": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 30,
                         "num_attention_heads": 16, "num_key_value_heads": 16, "head_dim": 64}},
        "s3gen": {"tokenizer": {"n_audio_state": 1280, "n_audio_head": 20, "n_audio_layer": 6},
                  "encoder": {"output_size": 512, "attention_heads": 8, "linear_units": 2048, "num_blocks": 6},
                  "estimator": {"channels": [256], "attention_head_dim": 64, "n_blocks": 4, "num_mid_blocks": 12,
                                "num_heads": 8},
                  "hift": {"base_channels": 512, "f0_channels": 512}},
    },
}

# Text the tokenizer's merges are learnt from; any other text still encodes (character by character).
SENTENCES = (
    "Hello there, how are you doing today?",
    "The quick brown fox jumps over the lazy dog.",
    "I can't believe it's already the end of the week.",
    "Please leave a message after the tone, and I'll call you back.",
    "Our flight to Lisbon departs at seven thirty tomorrow morning.",
    "She sells sea shells by the sea shore, and the shells she sells are surely seashells.",
    "Numbers like 1, 2, 3 and 42 are read out one by one!",
    "What time is it? It's a quarter past nine - not too late.",
    "We listened to the rain on the roof while the kettle boiled.",
    "Every morning the baker opens the shop before sunrise.",
)


def synthetic_voice(seconds: float = VOICE_SECONDS, sample_rate: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """A deterministic voice-like clip, float32 mono in [-0.5, 0.5]: harmonic syllables (pitch
    110..190 Hz, harmonics up to 4 kHz falling 6 dB per octave) of 120..280 ms with 40..120 ms
    gaps, 0.3 s of near-silence at both ends, a little noise."""
    rng = np.random.RandomState(seed)
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    f0 = 150 + 40 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voiced = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 26) if k * 190 < 4000)
    envelope = np.zeros(n)
    position = int(0.3 * sample_rate)
    while position < n - int(0.3 * sample_rate):
        length = int(rng.uniform(0.12, 0.28) * sample_rate)
        length = min(length, n - int(0.3 * sample_rate) - position)
        envelope[position:position + length] = np.sin(np.pi * np.arange(length) / length) ** 2 * rng.uniform(0.5, 1.0)
        position += length + int(rng.uniform(0.04, 0.12) * sample_rate)
    wav = voiced * envelope + 0.002 * rng.standard_normal(n)
    return (0.5 * wav / np.max(np.abs(wav))).astype(np.float32)


def tokenizer_json(vocab_size: int = TEXT_VOCAB) -> str:
    """An EnTokenizer vocabulary: byte-pair merges learnt on SENTENCES over printable ASCII,
    [STOP] 0, [UNK] 1, [SPACE] 2 (EnTokenizer writes spaces as [SPACE]), [START] 255, every id < vocab_size."""
    from tokenizers import Tokenizer, models, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    alphabet = [chr(c) for c in range(33, 127)]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 1, special_tokens=list(SPECIALS), initial_alphabet=alphabet,
                                  show_progress=False)
    tokenizer.train_from_iterator([s.replace(" ", "[SPACE]") for s in SENTENCES] * 4, trainer=trainer)
    spec = json.loads(tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    ordered = sorted(vocab, key=vocab.get)
    ordered.insert(START_TEXT, START) if len(ordered) >= START_TEXT else ordered.append(START)
    spec["model"]["vocab"] = {token: i for i, token in enumerate(ordered[:vocab_size])}
    added = [{"id": spec["model"]["vocab"][token], "content": token, "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": True} for token in (*SPECIALS, START)]
    spec["added_tokens"] = added
    return json.dumps(spec, ensure_ascii=False)


def _save_state(module: torch.nn.Module, path: Path, drop=()) -> None:
    from safetensors.torch import save_file

    state = {key: value.detach().contiguous().clone() for key, value in module.state_dict().items()
             if not any(key.endswith(suffix) for suffix in drop)}
    save_file(state, str(path))


def write_random_checkpoint(out_dir, size: str = "tiny", seed: int = 0) -> Path:
    """Write a random checkpoint of `size` ("tiny" | "small") into out_dir; returns out_dir."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    import soundfile

    from tritone.export.chatterbox.reference import RANDOM_DIMS_FILE, S3Gen, build_models, load_reference

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dims = {"size": size, "seed": seed, **DIMS[size]}
    torch.manual_seed(seed)
    t3, s3gen, ve = build_models(dims)
    _save_state(ve, out / "ve.safetensors")
    _save_state(t3, out / "t3_cfg.safetensors")
    _save_state(s3gen, out / "s3gen.safetensors", drop=S3Gen.ignore_state_dict_missing)
    del t3, s3gen, ve
    (out / "tokenizer.json").write_text(tokenizer_json())
    (out / RANDOM_DIMS_FILE).write_text(json.dumps(dims, indent=1) + "\n")
    (out / "conds.pt").unlink(missing_ok=True)
    model = load_reference(out)
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "voice.wav"
        soundfile.write(clip, synthetic_voice(seed=seed), SAMPLE_RATE, subtype="FLOAT")
        model.prepare_conditionals(str(clip), exaggeration=0.5)
    model.conds.save(out / "conds.pt")
    return out
