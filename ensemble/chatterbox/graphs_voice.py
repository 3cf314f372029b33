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
