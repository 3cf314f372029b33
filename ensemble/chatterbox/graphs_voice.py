"""Torch modules that turn a reference clip into a Chatterbox voice (its conditioning), for ONNX.

Signal-processing building blocks first (they are also what `export/chatterbox/reference.py`
installs in place of torchaudio's Kaldi fbank and sinc resampler, so the reference package and
the exported graphs compute one definition):

- `povey_window`, `kaldi_mel_banks`: Kaldi's fbank window and triangular mel filters.
- `sinc_resample_kernel`, `SincResample`: band-limited resampling by a Hann-windowed sinc
  (rolloff 0.99, 6 zero crossings), as a strided convolution with one kernel per output phase.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from tritone.ensemble.chatterbox.voice import clip_16k

# Kaldi's fbank constants (what CAMPPlus asks for: 16 kHz, 25 ms frames every 10 ms, 80 bins)
KALDI_PREEMPHASIS = 0.97
KALDI_LOW_FREQ = 20.0
KALDI_POVEY_POWER = 0.85


def kaldi_mel(freq: torch.Tensor) -> torch.Tensor:
    """Kaldi's mel scale: 1127 ln(1 + f / 700)."""
    return 1127.0 * torch.log1p(freq / 700.0)


def povey_window(length: int, dtype=torch.float32) -> torch.Tensor:
    """Kaldi's 'povey' window: a symmetric Hann window raised to the power 0.85."""
    n = torch.arange(length, dtype=torch.float64)
    hann = 0.5 - 0.5 * torch.cos(2 * math.pi * n / (length - 1))
    return hann.pow(KALDI_POVEY_POWER).to(dtype)


def kaldi_mel_banks(num_bins: int, padded_window: int, sample_rate: float,
                    low_freq: float = KALDI_LOW_FREQ, high_freq: float = 0.0,
                    dtype=torch.float32) -> torch.Tensor:
    """Kaldi's triangular filters on the mel scale, [num_bins, padded_window // 2 + 1].

    Bin b rises from mel_low + b * delta to its peak one delta higher and falls to zero one
    more delta up, delta = (mel_high - mel_low) / (num_bins + 1); a high_freq <= 0 counts down
    from Nyquist. The Nyquist column is zero (Kaldi's filters span padded_window / 2 bins).
    """
    nyquist = 0.5 * sample_rate
    high = high_freq if high_freq > 0 else nyquist + high_freq
    if not 0 <= low_freq < high <= nyquist:
        raise ValueError(f"low_freq {low_freq} and high_freq {high} must satisfy 0 <= low < high <= {nyquist}")
    mel_low, mel_high = kaldi_mel(torch.tensor(low_freq, dtype=torch.float64)), kaldi_mel(torch.tensor(high, dtype=torch.float64))
    delta = (mel_high - mel_low) / (num_bins + 1)
    left = mel_low + delta * torch.arange(num_bins, dtype=torch.float64)[:, None]
    center, right = left + delta, left + 2 * delta
    fft_mel = kaldi_mel(sample_rate / padded_window * torch.arange(padded_window // 2, dtype=torch.float64))[None, :]
    rising = (fft_mel - left) / (center - left)
    falling = (right - fft_mel) / (right - center)
    banks = torch.clamp(torch.minimum(rising, falling), min=0.0)
    return F.pad(banks, (0, 1)).to(dtype)


def sinc_resample_kernel(orig_sr: int, new_sr: int, *, zero_crossings: int = 6, rolloff: float = 0.99,
                         dtype=torch.float32) -> tuple[torch.Tensor, int, int, int]:
    """One low-pass interpolation kernel per output phase: ([phases, 1, 2 * width + stride], width, stride, phases).

    With g = gcd(orig, new), every `stride` = orig / g input samples give `phases` = new / g
    output samples. Output phase j at input offset s sees sinc(pi * cutoff * (s / orig - j / new))
    under a Hann window that reaches zero `zero_crossings` sinc lobes away; cutoff = rolloff *
    min(orig, new) keeps the transition band below the lower Nyquist frequency.
    """
    if orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} and {new_sr}")
    g = math.gcd(int(orig_sr), int(new_sr))
    stride, phases = int(orig_sr) // g, int(new_sr) // g
    cutoff = min(stride, phases) * rolloff
    width = math.ceil(zero_crossings * stride / cutoff)
    offsets = torch.arange(-width, width + stride, dtype=torch.float64)[None, :] / stride
    t = (offsets - torch.arange(phases, dtype=torch.float64)[:, None] / phases) * cutoff
    t = t.clamp(-zero_crossings, zero_crossings)
    window = torch.cos(t * math.pi / zero_crossings / 2) ** 2
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / torch.where(t == 0, torch.ones_like(t), t))
    kernel = sinc * window * (cutoff / stride)
    return kernel[:, None, :].to(dtype), width, stride, phases


def resampled_length(length: int, orig_sr: int, new_sr: int) -> int:
    """ceil(length * new / orig): samples a clip of `length` samples has after resampling."""
    g = math.gcd(int(orig_sr), int(new_sr))
    return -(-length * (new_sr // g) // (orig_sr // g))


class SincResample(nn.Module):
    """[..., samples] at orig_sr -> [..., ceil(samples * new / orig)] at new_sr (zero padding outside the clip)."""

    def __init__(self, orig_sr: int, new_sr: int):
        super().__init__()
        kernel, self.width, self.stride, self.phases = sinc_resample_kernel(orig_sr, new_sr)
        self.register_buffer("kernel", kernel, persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        shape = wav.shape
        length = shape[-1]
        x = F.pad(wav.reshape(-1, 1, length), (self.width, self.width + self.stride))
        y = F.conv1d(x, self.kernel.to(x.dtype), stride=self.stride)  # [rows, phases, blocks]
        y = y.transpose(1, 2).reshape(x.shape[0], -1)
        target = (length * self.phases + self.stride - 1) // self.stride
        return y[:, :target].reshape(*shape[:-1], -1)


# --- the voice graph ------------------------------------------------------------------------------
# What ChatterboxTTS.prepare_conditionals computes from a clip, and from which audio:
#   T3:   speaker_emb  <- VoiceEncoder(librosa-trimmed 16 kHz clip, 40-mel partials)
#         prompt speech tokens <- S3Tokenizer(first 6 s of the 16 kHz clip), at most 150
#   flow: prompt_token, prompt_feat, embedding <- S3Gen.embed_ref(first 10 s of the 24 kHz clip):
#         its own 16 kHz (torchaudio's sinc Resample) for the tokens and CAMPPlus' fbank, the 24 kHz
#         mel (2 frames per token) for prompt_feat.
# The reference makes T3's 16 kHz clip with librosa.resample (soxr, quality HQ), which no ONNX
# operator reproduces: the graph takes it as a second input (`soxr_16k` below says how), and
# resamples the flow's 16 kHz itself (the sinc kernel above, as the reference does).
S3_SR, S3GEN_SR = 16000, 24000
T3_PROMPT_SAMPLES = 6 * S3_SR  # ChatterboxTTS.ENC_COND_LEN
T3_PROMPT_TOKENS = 150  # T3Config.speech_cond_prompt_len
FLOW_PROMPT_SAMPLES = 10 * S3GEN_SR  # ChatterboxTTS.DEC_COND_LEN
TOKEN_MEL_RATIO = 2  # 24 kHz mel frames per S3 token
VE_PARTIAL_FRAMES, VE_FRAME_STEP, VE_MIN_COVERAGE = 160, 77, 0.8  # rate 1.3: round(16000 / 1.3 / 160) = 77
TRIM_TOP_DB, TRIM_FRAME, TRIM_HOP = 20.0, 2048, 512  # librosa.effects.trim as VoiceEncoder.embeds_from_wavs calls it


soxr_16k = clip_16k  # T3's 16 kHz clip as the reference makes it (ensemble/chatterbox/voice.py)


def dft_weight(n_fft: int, bins: int, window: torch.Tensor) -> torch.Tensor:
    """[2 * bins, len(window)] float64: rows cos then -sin of the first `bins` DFT bins, times the window."""
    n = torch.arange(window.numel(), dtype=torch.float64)
    angle = 2 * math.pi * torch.arange(bins, dtype=torch.float64)[:, None] * n[None, :] / n_fft
    return torch.cat([torch.cos(angle), -torch.sin(angle)]) * window.to(torch.float64)[None, :]


class FramePower(nn.Module):
    """[1, samples] -> power spectrum [1, bins, frames]: frames of `frame` samples every `hop`, a fixed
    linear map per frame (window and DFT, and whatever `pre` applies first) as one strided convolution."""

    def __init__(self, frame: int, hop: int, n_fft: int, bins: int, window: torch.Tensor, pre: torch.Tensor | None = None):
        super().__init__()
        weight = dft_weight(n_fft, bins, window)
        if pre is not None:
            weight = weight @ pre
        self.hop, self.bins = hop, bins
        self.register_buffer("weight", weight.to(torch.float32)[:, None, :], persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        spectrum = F.conv1d(wav[:, None, :], self.weight, stride=self.hop)
        return spectrum[:, :self.bins] ** 2 + spectrum[:, self.bins:] ** 2


def _mel_columns(basis: torch.Tensor) -> int:
    """Spectrum bins a mel basis reads (its last non-zero column + 1)."""
    return int(torch.nonzero(basis.abs().sum(0))[-1]) + 1


class TokenizerMel(nn.Module):
    """S3Tokenizer.log_mel_spectrogram: centered 400-point STFT every 160 samples (reflect padding,
    periodic Hann), last frame dropped, 128 mels, log10 floored at 1e-10 and at (max - 8), (x + 4) / 4."""

    def __init__(self, mel_filters: torch.Tensor):
        super().__init__()
        self.power = FramePower(400, 160, 400, 201, torch.hann_window(400, dtype=torch.float64))
        self.register_buffer("filters", mel_filters.detach().clone().float(), persistent=False)

    def forward(self, wav16: torch.Tensor) -> torch.Tensor:  # [1, samples] -> [1, 128, samples // 160]
        power = self.power(F.pad(wav16[:, None, :], (200, 200), mode="reflect")[:, 0])[..., :-1]
        log_spec = torch.clamp(self.filters @ power, min=1e-10).log10()
        log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
        return (log_spec + 4.0) / 4.0


class S3TokenizerGraph(nn.Module):
    """S3TokenizerV2 (its encoder and FSQ quantizer, weights shared) on one unpadded clip: 16 kHz
    samples -> speech tokens at 25 Hz. The reference's rotary embedding is complex-valued; here its
    cos / sin are real tables taken from it. A single unpadded clip makes every mask all ones."""

    def __init__(self, tokenizer):
        super().__init__()
        self.mel = TokenizerMel(tokenizer._mel_filters)
        self.encoder = tokenizer.encoder
        self.project_down = tokenizer.quantizer._codebook.project_down
        freqs = self.encoder.freqs_cis
        self.register_buffer("cos", freqs.real.float().contiguous(), persistent=False)
        self.register_buffer("sin", freqs.imag.float().contiguous(), persistent=False)
        self.register_buffer("powers", 3.0 ** torch.arange(8, dtype=torch.float32), persistent=False)

    @staticmethod
    def _rotate(x, cos, sin):  # [1, T, heads, 64]
        half = x.shape[-1] // 2
        return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin

    def _attention(self, attn, x, cos, sin):
        heads = attn.n_head
        q, k, v = attn.query(x), attn.key(x), attn.value(x)
        b, t, d = q.shape
        scale = (d // heads) ** -0.25
        q, k, v = (y.reshape(b, t, heads, d // heads) for y in (q, k, v))
        q, k = self._rotate(q, cos, sin), self._rotate(k, cos, sin)
        memory = v.reshape(b, t, d)
        memory = attn.fsmn_block(attn.pad_fn(memory.transpose(1, 2))).transpose(1, 2) + memory
        q = q.permute(0, 2, 1, 3) * scale
        k = k.permute(0, 2, 3, 1) * scale
        weights = torch.softmax(q @ k, dim=-1)
        out = (weights @ v.permute(0, 2, 1, 3)).permute(0, 2, 1, 3).reshape(b, t, d)
        return attn.out(out) + memory

    def tokens_of_mel(self, mel: torch.Tensor) -> torch.Tensor:  # [1, 128, frames] -> [1, ceil(frames / 4)]
        x = F.gelu(self.encoder.conv1(mel))
        x = F.gelu(self.encoder.conv2(x)).permute(0, 2, 1)
        t = x.shape[1]
        cos, sin = self.cos[:t][None, :, None, :], self.sin[:t][None, :, None, :]
        for block in self.encoder.blocks:
            x = x + self._attention(block.attn, block.attn_ln(x), cos, sin)
            x = x + block.mlp(block.mlp_ln(x))
        h = torch.tanh(self.project_down(x)) * 0.9990000128746033
        return ((h.round() + 1) * self.powers).sum(-1).to(torch.int64)

    def forward(self, wav16: torch.Tensor) -> torch.Tensor:
        return self.tokens_of_mel(self.mel(wav16))


class FlowPromptMel(nn.Module):
    """S3Gen's mel_extractor (Matcha's): reflect padding of 720 samples each side, 1920-point STFT
    every 480 samples (periodic Hann, not centered), magnitude sqrt(re^2 + im^2 + 1e-9), 80 mels up
    to 8 kHz, natural log floored at 1e-5. [1, samples] at 24 kHz -> [1, samples // 480, 80]."""

    def __init__(self, n_fft: int = 1920, hop: int = 480, mels: int = 80):
        super().__init__()
        from librosa.filters import mel as librosa_mel

        basis = torch.from_numpy(librosa_mel(sr=S3GEN_SR, n_fft=n_fft, n_mels=mels, fmin=0, fmax=8000)).float()
        used = _mel_columns(basis)  # bins above 8 kHz have no weight: not computed
        self.pad = (n_fft - hop) // 2
        self.power = FramePower(n_fft, hop, n_fft, used, torch.hann_window(n_fft, dtype=torch.float64))
        self.register_buffer("basis", basis[:, :used].contiguous(), persistent=False)

    def forward(self, wav24: torch.Tensor) -> torch.Tensor:
        padded = F.pad(wav24[:, None, :], (self.pad, self.pad), mode="reflect")[:, 0]
        magnitude = torch.sqrt(self.power(padded) + 1e-9)
        return torch.log(torch.clamp(self.basis @ magnitude, min=1e-5)).transpose(1, 2)


class KaldiFbank(nn.Module):
    """Kaldi's fbank as CAMPPlus asks for it (16 kHz, 25 / 10 ms, 80 bins, dither 0): DC removal,
    pre-emphasis 0.97, povey window and the 512-point DFT folded into one [514, 400] matrix applied
    as a strided convolution, power, Kaldi's mel banks, log floored at float32 epsilon.
    [1, samples] -> [1, 1 + (samples - 400) // 160, 80]."""

    def __init__(self, bins: int = 80, sample_rate: int = S3_SR):
        super().__init__()
        size, padded = int(sample_rate * 0.025), 512
        shift = int(sample_rate * 0.010)
        remove_dc = torch.eye(size, dtype=torch.float64) - 1.0 / size
        preemphasis = torch.eye(size, dtype=torch.float64) - KALDI_PREEMPHASIS * torch.diag(torch.ones(size - 1, dtype=torch.float64), -1)
        preemphasis[0, 0] = 1.0 - KALDI_PREEMPHASIS  # Kaldi's first sample is emphasised against itself
        self.power = FramePower(size, shift, padded, padded // 2 + 1, povey_window(size, torch.float64), preemphasis @ remove_dc)
        self.register_buffer("banks", kaldi_mel_banks(bins, padded, sample_rate), persistent=False)
        self.eps = float(torch.finfo(torch.float32).eps)

    def forward(self, wav16: torch.Tensor) -> torch.Tensor:
        return torch.log(torch.clamp(self.banks @ self.power(wav16), min=self.eps)).transpose(1, 2)


class XVectorGraph(nn.Module):
    """CAMPPlus.inference on one clip: Kaldi fbank, mean over time removed, CAMPPlus -> [1, 192]."""

    def __init__(self, campplus):
        super().__init__()
        self.fbank = KaldiFbank()
        self.campplus = campplus

    def forward(self, wav16: torch.Tensor) -> torch.Tensor:
        feature = self.fbank(wav16)
        return self.campplus(feature - feature.mean(dim=1, keepdim=True))


class SpeakerEmbeddingGraph(nn.Module):
    """VoiceEncoder.embeds_from_wavs on one 16 kHz clip, as prepare_conditionals calls it:
    librosa.effects.trim(top_db=20) (RMS over 2048-sample frames every 512, zero padded and
    centered; frames within 20 dB of the loudest kept, from the first to one frame past the last),
    40-mel power spectrogram (centered 400-point STFT every 160, reflect padding, periodic Hann),
    partials of 160 frames every 77 (rate 1.3; the last one kept when 80% covered, zero padded),
    LSTM -> projection -> ReLU -> L2 norm per partial, their mean, L2 norm. [1, samples] -> [1, 256]."""

    def __init__(self, voice_encoder):
        super().__init__()
        from librosa.filters import mel as librosa_mel

        hp = voice_encoder.hp
        self.ve = voice_encoder
        self.num_mels = hp.num_mels
        basis = torch.from_numpy(librosa_mel(sr=hp.sample_rate, n_fft=hp.n_fft, n_mels=hp.num_mels,
                                             fmin=hp.fmin, fmax=hp.fmax)).float()
        self.power = FramePower(hp.win_size, hp.hop_size, hp.n_fft, hp.n_fft // 2 + 1,
                                torch.hann_window(hp.win_size, dtype=torch.float64))
        self.register_buffer("basis", basis, persistent=False)
        self.register_buffer("rms_kernel", torch.full((1, 1, TRIM_FRAME), 1.0 / TRIM_FRAME), persistent=False)
        self.half = hp.n_fft // 2

    def trim(self, wav: torch.Tensor) -> torch.Tensor:
        power = F.conv1d(F.pad((wav * wav)[:, None, :], (TRIM_FRAME // 2, TRIM_FRAME // 2)), self.rms_kernel,
                         stride=TRIM_HOP)[0, 0]
        rms = torch.sqrt(power)
        db = 20.0 * torch.log10(torch.clamp(rms, min=1e-5)) - 20.0 * torch.log10(torch.clamp(rms.max(), min=1e-5))
        loud = (db > -TRIM_TOP_DB).to(torch.int32)
        first = torch.argmax(loud)
        last = torch._shape_as_tensor(loud)[0] - 1 - torch.argmax(torch.flip(loud, [0]))
        end = torch.minimum((last + 1) * TRIM_HOP, torch._shape_as_tensor(wav)[1])
        return wav.index_select(1, torch.arange(first * TRIM_HOP, end))

    def partials(self, mels: torch.Tensor) -> torch.Tensor:  # [frames, 40] -> [n, 160, 40]
        frames = torch._shape_as_tensor(mels)[0]  # a tensor: the graph keeps it dynamic
        covered = torch.clamp(frames - (VE_PARTIAL_FRAMES - VE_FRAME_STEP), min=0)
        wins = torch.div(covered, VE_FRAME_STEP, rounding_mode="floor")
        remainder = covered - wins * VE_FRAME_STEP
        last_enough = remainder + (VE_PARTIAL_FRAMES - VE_FRAME_STEP) >= int(VE_MIN_COVERAGE * VE_PARTIAL_FRAMES)
        wins = wins + ((wins == 0) | last_enough).to(wins.dtype)
        index = torch.arange(wins)[:, None] * VE_FRAME_STEP + torch.arange(VE_PARTIAL_FRAMES)[None, :]
        padded = torch.cat([mels, torch.zeros(VE_PARTIAL_FRAMES, self.num_mels, dtype=mels.dtype)], dim=0)
        return padded[index]

    def forward(self, wav16: torch.Tensor) -> torch.Tensor:
        wav = self.trim(wav16)
        power = self.power(F.pad(wav[:, None, :], (self.half, self.half), mode="reflect")[:, 0])
        mels = (self.basis @ power)[0].transpose(0, 1)
        _, (hidden, _) = self.ve.lstm(self.partials(mels))
        embeds = F.relu(self.ve.proj(hidden[-1]))
        embeds = embeds / torch.linalg.norm(embeds, dim=1, keepdim=True)
        mean = embeds.mean(dim=0, keepdim=True)
        return mean / torch.linalg.norm(mean, dim=1, keepdim=True)


class ChatterboxVoiceGraph(nn.Module):
    """A reference clip -> a voice: (audio [1, n24] at 24 kHz, audio_16k [1, n16] = soxr_16k(audio))
    -> speaker_emb [1, 256], prompt_speech_tokens [1, <= 150] (T3), prompt_tokens [1, T],
    prompt_mel [1, 2 T, 80], xvector [1, 192] (the flow): ChatterboxTTS.prepare_conditionals."""

    def __init__(self, models):
        super().__init__()
        s3gen = models.s3gen
        self.tokenizer = S3TokenizerGraph(s3gen.tokenizer)
        self.speaker = SpeakerEmbeddingGraph(models.ve)
        self.xvector = XVectorGraph(s3gen.speaker_encoder)
        self.prompt_mel = FlowPromptMel()
        self.resample = SincResample(S3GEN_SR, S3_SR)

    def forward(self, audio: torch.Tensor, audio_16k: torch.Tensor):
        speaker_emb = self.speaker(audio_16k)
        t3_prompt = self.tokenizer(audio_16k[:, :T3_PROMPT_SAMPLES])[:, :T3_PROMPT_TOKENS]
        wav24 = audio[:, :FLOW_PROMPT_SAMPLES]
        mel = self.prompt_mel(wav24)
        wav16 = self.resample(wav24)
        tokens = self.tokenizer(wav16)[:, :mel.shape[1] // TOKEN_MEL_RATIO]  # embed_ref: mel frames = 2 * tokens
        return speaker_emb, t3_prompt, tokens, mel, self.xvector(wav16)
