"""Tiny random-weight MusicGen: the real architectures at toy sizes, for tests and hub-less machines.

The shapes that matter to serving stay real: a 32 kHz EnCodec with hop 640 (50 frames per
second), 4 codebooks, the T5 text encoder, and the decoder's pad/bos token equal to the
codebook size as in the released checkpoints. Only widths, depths and vocabularies shrink.
"""

from __future__ import annotations

from pathlib import Path

TINY_RANDOM = "tiny-random"
SMALL_RANDOM = "small-random"  # musicgen-small's exact architecture, random weights: real cost per step
RANDOM_CHECKPOINTS = (TINY_RANDOM, SMALL_RANDOM)

# Prompts whose words the tiny tokenizer learns (anything else maps to <unk>); benchmarks use them too.
PROMPTS = (
    "lo-fi piano with rain",
    "80s pop track with bassy drums and synth",
    "90s rock song with loud guitars and heavy drums",
    "calm ambient pads over a slow string melody",
    "upbeat electronic dance music with a catchy lead",
    "jazz trio with brushed drums upright bass and piano",
    "orchestral film score with brass and timpani",
    "acoustic folk guitar and soft vocals humming",
)


def build_tokenizer():
    """A T5-style tokenizer (pad=0, eos=1, unk=2, '</s>' appended) trained on a few prompts."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=128, special_tokens=["<pad>", "</s>", "<unk>"], show_progress=False)
    tok.train_from_iterator(PROMPTS, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def build_model(vocab_size: int, seed: int = 0, size: str = TINY_RANDOM):
    """A random-weight MusicgenForConditionalGeneration: tiny, or musicgen-small's architecture."""
    import torch
    from transformers import (
        EncodecConfig,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        T5Config,
    )

    torch.manual_seed(seed)
    if size == SMALL_RANDOM:  # the released facebook/musicgen-small configuration
        codebook_size = 2048
        audio = EncodecConfig(
            sampling_rate=32000, upsampling_ratios=[8, 5, 4, 4], target_bandwidths=[2.2], codebook_size=codebook_size,
            codebook_dim=128, num_filters=64, hidden_size=128, use_causal_conv=False, use_conv_shortcut=False,
            normalize=False, chunk_length_s=None,
        )
        text = T5Config(vocab_size=32128, d_model=768, d_ff=3072, num_layers=12, num_heads=12, d_kv=64,
                        feed_forward_proj="relu")
        decoder = MusicgenDecoderConfig(
            vocab_size=codebook_size, hidden_size=1024, ffn_dim=4096, num_hidden_layers=24, num_attention_heads=16,
            num_codebooks=4, pad_token_id=codebook_size, bos_token_id=codebook_size, max_position_embeddings=2048,
        )
    else:
        codebook_size = 64
        audio = EncodecConfig(
            sampling_rate=32000,
            upsampling_ratios=[8, 5, 4, 4],  # hop 640: 50 frames per second, as encodec_32khz
            target_bandwidths=[1.2],  # 4 codebooks of 64 entries at 50 Hz
            codebook_size=codebook_size,
            codebook_dim=8,
            num_filters=4,
            hidden_size=8,
            use_causal_conv=False,
            use_conv_shortcut=False,
            normalize=False,
            chunk_length_s=None,
        )
        text = T5Config(vocab_size=vocab_size, d_model=16, d_ff=32, num_layers=2, num_heads=2, d_kv=8,
                        feed_forward_proj="relu")
        decoder = MusicgenDecoderConfig(
            vocab_size=codebook_size,
            hidden_size=32,
            ffn_dim=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_codebooks=4,
            pad_token_id=codebook_size,
            bos_token_id=codebook_size,
            max_position_embeddings=2048,
        )
    config = MusicgenConfig(text_encoder=text, audio_encoder=audio, decoder=decoder)
    config.decoder_start_token_id = codebook_size
    config.pad_token_id = codebook_size
    model = MusicgenForConditionalGeneration(config).eval()
    _widen_init(model)
    model.generation_config.decoder_start_token_id = codebook_size
    model.generation_config.pad_token_id = codebook_size
    return model


def save_random(directory: Path, size: str = TINY_RANDOM, seed: int = 0) -> Path:
    """Write a random-weight checkpoint (weights, config, tokenizer) that from_pretrained loads."""
    tokenizer = build_tokenizer()
    model = build_model(vocab_size=len(tokenizer), seed=seed, size=size)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def _widen_init(model) -> None:
    """Re-draw the decoder's weights at unit scale.

    The library initialises them with std 0.02, which in a 32-wide decoder leaves the text
    almost no say: every prompt would yield the same codes, and tests could not tell requests
    apart. With std 1/sqrt(fan_in) each prompt steers its own output. EnCodec's codebooks start
    as zeros (they are learned buffers), which would make the audio independent of the codes.
    """
    import torch

    with torch.no_grad():
        for layer in model.audio_encoder.quantizer.layers:
            layer.codebook.embed.normal_(0.0, 1.0)
        for module in [model.decoder, getattr(model, "enc_to_dec_proj", None)]:
            if module is None:
                continue
            for name, param in module.named_parameters():
                if param.dim() == 2 and "embed" not in name:
                    param.normal_(0.0, param.shape[1] ** -0.5)
                elif param.dim() == 2:
                    param.normal_(0.0, 1.0)
