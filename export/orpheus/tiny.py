"""Random-weight Orpheus-format speech checkpoints: the real architectures, no hub needed.

What serving depends on stays real: a Llama decoder with grouped-query attention and Llama 3's
rotary scaling, the Orpheus vocabulary layout (text tokens, 10 control tokens, 7 blocks of
audio codes, 2 spare: 156940 = 128256 + 10 + 7 * 4096 + 2 in the released model), a SNAC
24 kHz codec with hop 512 and level strides 4, 2, 1 (7 codes per 2048-sample frame, no local
attention), and a byte-level tokenizer that prepends BOS as Llama 3's does. Only widths,
depths and vocabularies shrink.

- tiny-random: toy sizes, for tests and hub-less machines (exports in seconds).
- small-random: SmolLM2-135M's shape with the released Orpheus vocabulary (text_vocab_size
  128256, 4096 codes per level) and the released snac_24khz configuration: the per-step cost
  of a real, if small, speech LM, for CPU benchmarks.
"""

from __future__ import annotations

import json
from pathlib import Path

from tritone.ensemble.orpheus.format import TOKENS_PER_FRAME
from tritone.ensemble.orpheus.metadata import CHECKPOINT_DIR, CODEC_DIR

TINY_RANDOM = "tiny-random"
SMALL_RANDOM = "small-random"
RANDOM_CHECKPOINTS = (TINY_RANDOM, SMALL_RANDOM)

BOS_TOKEN = "<|begin_of_text|>"
EOT_TOKEN = "<|eot_id|>"
CONTROL_TOKENS = 10  # start/end of speech, human, ai, pad, 3 unused: Orpheus' tokeniser_length + 1 .. + 10
SPARE_TOKENS = 2  # after the audio blocks in the released vocabulary (156940 - 156938)

# Sentences the tiny tokenizer is trained on; tests and benchmarks use them as prompts. Being
# byte-level, the tokenizer still encodes any other text (in more, shorter tokens).
SENTENCES = (
    "Hello there, how are you doing today?",
    "The quick brown fox jumps over the lazy dog.",
    "I can't believe it's already the end of the week.",
    "Please leave a message after the tone, and I'll call you back.",
    "Our flight to Lisbon departs at seven thirty tomorrow morning.",
    "She sells sea shells by the sea shore.",
    "Turn left at the next corner, then keep going straight for two miles.",
    "Thank you so much for listening, see you next time!",
)

TEXT_VOCAB = 320  # tiny tokenizer: 256 bytes, 2 special tokens and merges
REAL_TEXT_VOCAB = 128256  # Llama 3's vocabulary, Orpheus' tokeniser_length
REAL_CODEBOOK = 4096


def orpheus_vocab_size(text_vocab_size: int, codebook_size: int) -> int:
    """The LM's vocabulary under Orpheus' layout: 156940 for the released checkpoints."""
    return text_vocab_size + CONTROL_TOKENS + TOKENS_PER_FRAME * codebook_size + SPARE_TOKENS


def build_tokenizer():
    """A byte-level BPE (any text encodes, no <unk>) with Llama 3's BOS and end-of-turn tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TEXT_VOCAB,
        special_tokens=[BOS_TOKEN, EOT_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(SENTENCES, trainer=trainer)
    bos = tok.token_to_id(BOS_TOKEN)
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=f"{BOS_TOKEN} $A", pair=f"{BOS_TOKEN} $A {BOS_TOKEN} $B",
                                      special_tokens=[(BOS_TOKEN, bos)]),
    ])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS_TOKEN, eos_token=EOT_TOKEN)


def build_lm(size: str = TINY_RANDOM, text_vocab_size: int | None = None, seed: int = 0):
    """A random-weight LlamaForCausalLM with the Orpheus vocabulary layout."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    if size == SMALL_RANDOM:  # SmolLM2-135M's shape, the released Orpheus vocabulary
        text_vocab_size, codebook = REAL_TEXT_VOCAB, REAL_CODEBOOK
        shape = dict(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                     head_dim=64, intermediate_size=1536, max_position_embeddings=8192)
        original_max = 2048
    elif size == TINY_RANDOM:
        text_vocab_size, codebook = text_vocab_size or TEXT_VOCAB, 64
        shape = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                     head_dim=16, intermediate_size=128, max_position_embeddings=4096)
        # with head_dim 16 and theta 5e5 the wavelengths run 6 .. 1e5 positions: a context of 512
        # puts frequencies in all three llama3 bands (kept, smoothed, divided by the factor)
        original_max = 512
    else:
        raise ValueError(f"unknown random checkpoint {size!r}; expected one of {RANDOM_CHECKPOINTS}")
    config = LlamaConfig(
        vocab_size=orpheus_vocab_size(text_vocab_size, codebook),
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": original_max},
        tie_word_embeddings=True,
        rms_norm_eps=1e-5,
        bos_token_id=0,
        eos_token_id=1,
        **shape,
    )
    model = LlamaForCausalLM(config).eval()
    _widen_init(model)
    return model


def build_codec(size: str = TINY_RANDOM, seed: int = 0):
    """A random-weight SNAC: snac_24khz's configuration, or the same rates at toy widths."""
    import torch
    from snac import SNAC

    torch.manual_seed(seed)
    model = SNAC(**codec_config(size)).eval()
    with torch.no_grad():  # codebooks at unit scale, like trained ones after L2 normalisation
        for quantizer in model.quantizer.quantizers:
            quantizer.codebook.weight.normal_(0.0, 1.0)
    return model


def codec_config(size: str) -> dict:
    common = dict(sampling_rate=24000, encoder_rates=[2, 4, 8, 8], decoder_rates=[8, 8, 4, 2],
                  attn_window_size=None, vq_strides=[4, 2, 1], noise=True, depthwise=True)
    if size == SMALL_RANDOM:  # hubertsiuzdak/snac_24khz
        return dict(common, encoder_dim=48, decoder_dim=1024, codebook_size=REAL_CODEBOOK, codebook_dim=8)
    if size == TINY_RANDOM:
        return dict(common, encoder_dim=8, decoder_dim=64, codebook_size=64, codebook_dim=8)
    raise ValueError(f"unknown random codec {size!r}; expected one of {RANDOM_CHECKPOINTS}")


def save_random(directory: Path, size: str = TINY_RANDOM, seed: int = 0) -> tuple[Path, Path]:
    """Write checkpoint/ (LM + tokenizer, from_pretrained layout) and codec/ (SNAC.from_pretrained layout)."""
    directory = Path(directory)
    return save_random_lm(directory / CHECKPOINT_DIR, size, seed), save_random_codec(directory / CODEC_DIR, size, seed)


def save_random_lm(directory: Path, size: str = TINY_RANDOM, seed: int = 0) -> Path:
    tokenizer = build_tokenizer()
    directory.mkdir(parents=True, exist_ok=True)
    build_lm(size, text_vocab_size=len(tokenizer), seed=seed).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def save_random_codec(directory: Path, size: str = TINY_RANDOM, seed: int = 0) -> Path:
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(codec_config(size), indent=2) + "\n")
    torch.save(build_codec(size, seed=seed).state_dict(), directory / "pytorch_model.bin")
    return directory


def _widen_init(model) -> None:
    """Re-draw the LM's weights at std 1/sqrt(fan_in) (embeddings at unit scale).

    The library's std 0.02 makes a 64-wide model's logits nearly flat: the best and second-best
    allowed audio tokens differ by ~1e-5, the size of ONNX Runtime's rounding differences from
    torch, so greedy decoding could pick different tokens in the two. At unit scale the gap is
    typically ~1e-1, and each prompt steers its own output. The tied embedding is drawn once; its
    scale makes the logits O(1) after the final RMSNorm.
    """
    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() != 2:
                continue
            if "embed" in name:
                param.normal_(0.0, 1.0)
            else:
                param.normal_(0.0, param.shape[1] ** -0.5)
