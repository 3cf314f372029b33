"""Chatterbox's reference implementation (the `chatterbox-tts` package), importable here.

Why a stand-in for torchaudio: chatterbox and s3tokenizer import `torchaudio` for three things
only (Kaldi's fbank in CAMPPlus, `transforms.Resample` in S3Gen.embed_ref, and resemble-perth's
`Spectrogram` / `InverseSpectrogram` for the watermark), but no torchaudio wheel matches the
CPU torch we pin (the registry's torchaudio 2.11 is a CUDA build for torch 2.11). When
`import torchaudio` fails, `install_torchaudio_standin` registers a small `torchaudio` module
that implements exactly those names in torch (the definitions below), and only then is the
package imported. Where a real torchaudio imports, it is used and nothing is installed.

- `kaldi_fbank`: Kaldi's log mel filterbank (torchaudio.compliance.kaldi.fbank): frames of
  25 ms every 10 ms with snip_edges, optional Gaussian dither, DC removal, pre-emphasis 0.97
  (the first sample against itself), the 'povey' window, zero padding to a power of two,
  power spectrum, Kaldi's mel filters (20 Hz .. Nyquist), log with float32 epsilon as floor.
- `resample` / `Resample`: Hann-windowed sinc interpolation, 6 zero crossings, rolloff 0.99
  (torchaudio's default method), as a strided convolution (ensemble/chatterbox/graphs_voice.py).

`load_reference(checkpoint_dir)` builds `chatterbox.tts.ChatterboxTTS` from a checkpoint folder
in the released layout (ve / t3_cfg / s3gen .safetensors, tokenizer.json, conds.pt). A folder
written by `tritone.export.chatterbox.tiny` also holds `tritone_random.json`: the models are then
built with the dimensions it records (same classes, same state-dict keys), else with the
package's defaults (the released checkpoint). resemble-perth's watermarker cannot load here (it
imports `pkg_resources`, gone from setuptools >= 81): the model then gets `Unwatermarked`.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import json
import math
import sys
import types
from pathlib import Path

import torch
from torch.nn import functional as F

from tritone.ensemble.chatterbox.graphs_voice import SincResample, kaldi_mel_banks, povey_window

RANDOM_DIMS_FILE = "tritone_random.json"
CHECKPOINT_FILES = ("ve.safetensors", "t3_cfg.safetensors", "s3gen.safetensors", "tokenizer.json")


# --- the torchaudio stand-in --------------------------------------------------------------------

def kaldi_fbank(
    waveform: torch.Tensor,
    *,
    num_mel_bins: int = 23,
    frame_length: float = 25.0,
    frame_shift: float = 10.0,
    dither: float = 0.0,
    preemphasis_coefficient: float = 0.97,
    remove_dc_offset: bool = True,
    window_type: str = "povey",
    round_to_power_of_two: bool = True,
    sample_frequency: float = 16000.0,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
    use_log_fbank: bool = True,
    use_power: bool = True,
    snip_edges: bool = True,
    use_energy: bool = False,
    subtract_mean: bool = False,
    channel: int = -1,
    vtln_warp: float = 1.0,
    **ignored,
) -> torch.Tensor:
    """[channels, samples] -> [frames, num_mel_bins] log mel energies, as Kaldi's compute-fbank-feats."""
    unsupported = {name: value for name, value in (("window_type", window_type != "povey"),
                                                    ("snip_edges", not snip_edges), ("use_energy", use_energy),
                                                    ("vtln_warp", vtln_warp != 1.0)) if value}
    if unsupported:
        raise NotImplementedError(f"kaldi_fbank stand-in: unsupported option(s) {sorted(unsupported)}")
    if waveform.dim() != 2:
        raise ValueError(f"waveform must be [channels, samples], got shape {tuple(waveform.shape)}")
    signal = waveform[max(channel, 0)]
    window_size = int(sample_frequency * frame_length * 0.001)
    window_shift = int(sample_frequency * frame_shift * 0.001)
    padded = 2 ** math.ceil(math.log2(window_size)) if round_to_power_of_two else window_size
    if signal.numel() < window_size:
        return torch.empty(0, num_mel_bins, dtype=waveform.dtype)
    frames = signal.unfold(0, window_size, window_shift)  # [frames, window_size]: 1 + (n - size) // shift
    if dither != 0.0:
        frames = frames + dither * torch.randn_like(frames)
    if remove_dc_offset:
        frames = frames - frames.mean(dim=1, keepdim=True)
    if preemphasis_coefficient != 0.0:
        previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
        frames = frames - preemphasis_coefficient * previous
    frames = frames * povey_window(window_size, frames.dtype)
    frames = F.pad(frames, (0, padded - window_size))
    spectrum = torch.fft.rfft(frames).abs()
    if use_power:
        spectrum = spectrum.pow(2.0)
    banks = kaldi_mel_banks(num_mel_bins, padded, sample_frequency, low_freq, high_freq, frames.dtype)
    energies = spectrum @ banks.T
    if use_log_fbank:
        energies = torch.clamp(energies, min=torch.finfo(energies.dtype).eps).log()
    if subtract_mean:
        energies = energies - energies.mean(dim=0, keepdim=True)
    return energies


class Resample(SincResample):
    """torchaudio.transforms.Resample(orig_freq, new_freq) with its default method (sinc_interp_hann)."""

    def __init__(self, orig_freq: int = 16000, new_freq: int = 16000, resampling_method: str = "sinc_interp_hann",
                 lowpass_filter_width: int = 6, rolloff: float = 0.99, beta=None, **ignored):
        if (resampling_method, lowpass_filter_width, rolloff) != ("sinc_interp_hann", 6, 0.99):
            raise NotImplementedError("Resample stand-in: only sinc_interp_hann, width 6, rolloff 0.99")
        super().__init__(int(orig_freq), int(new_freq))
        self.same = int(orig_freq) == int(new_freq)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return wav if self.same else super().forward(wav)


def resample(waveform: torch.Tensor, orig_freq: int, new_freq: int, **kwargs) -> torch.Tensor:
    """torchaudio.functional.resample."""
    return Resample(orig_freq, new_freq, **kwargs)(waveform)


class Spectrogram(torch.nn.Module):
    """torchaudio.transforms.Spectrogram for power=None (complex STFT, centered, reflect padding)."""

    def __init__(self, n_fft=400, win_length=None, hop_length=None, pad=0, window_fn=torch.hann_window,
                 power=2.0, normalized=False, center=True, pad_mode="reflect", onesided=True, **ignored):
        super().__init__()
        if pad or normalized:
            raise NotImplementedError("Spectrogram stand-in: pad and normalized are not supported")
        self.n_fft, self.win_length = n_fft, win_length or n_fft
        self.hop_length = hop_length or self.win_length // 2
        self.power, self.center, self.pad_mode, self.onesided = power, center, pad_mode, onesided
        self.register_buffer("window", window_fn(self.win_length), persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        shape = waveform.shape
        spec = torch.stft(waveform.reshape(-1, shape[-1]), self.n_fft, self.hop_length, self.win_length, self.window,
                          center=self.center, pad_mode=self.pad_mode, onesided=self.onesided, return_complex=True)
        spec = spec.reshape(*shape[:-1], *spec.shape[-2:])
        return spec if self.power is None else spec.abs().pow(self.power)


class InverseSpectrogram(torch.nn.Module):
    """torchaudio.transforms.InverseSpectrogram (centered, onesided)."""

    def __init__(self, n_fft=400, win_length=None, hop_length=None, pad=0, window_fn=torch.hann_window,
                 normalized=False, center=True, pad_mode="reflect", onesided=True, **ignored):
        super().__init__()
        if pad or normalized:
            raise NotImplementedError("InverseSpectrogram stand-in: pad and normalized are not supported")
        self.n_fft, self.win_length = n_fft, win_length or n_fft
        self.hop_length = hop_length or self.win_length // 2
        self.center, self.onesided = center, onesided
        self.register_buffer("window", window_fn(self.win_length), persistent=False)

    def forward(self, spectrogram: torch.Tensor, length=None) -> torch.Tensor:
        shape = spectrogram.shape
        wav = torch.istft(spectrogram.reshape(-1, *shape[-2:]), self.n_fft, self.hop_length, self.win_length,
                          self.window, center=self.center, onesided=self.onesided, length=length)
        return wav.reshape(*shape[:-2], -1)


class TimeStretch(torch.nn.Module):
    """Constructed by resemble-perth's audio processor, never called at inference."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, *args, **kwargs):
        raise NotImplementedError("TimeStretch is not part of the torchaudio stand-in")


def _module(name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    module.__doc__ = "tritone's torchaudio stand-in (tritone.export.chatterbox.reference)"
    sys.modules[name] = module
    return module


def install_torchaudio_standin() -> bool:
    """Register the stand-in as `torchaudio` unless a real torchaudio imports; True when the stand-in is in place."""
    existing = sys.modules.get("torchaudio")
    if existing is not None:
        return bool(getattr(existing, "TRITONE_STANDIN", False))
    try:
        import torchaudio  # noqa: F401
        return False
    except Exception:  # noqa: BLE001 - missing, or a build for another torch: either way unusable
        for name in [n for n in sys.modules if n == "torchaudio" or n.startswith("torchaudio.")]:
            del sys.modules[name]
    root, compliance, kaldi = _module("torchaudio"), _module("torchaudio.compliance"), _module("torchaudio.compliance.kaldi")
    transforms, functional = _module("torchaudio.transforms"), _module("torchaudio.functional")
    root.TRITONE_STANDIN = True
    root.compliance, compliance.kaldi, root.transforms, root.functional = compliance, kaldi, transforms, functional
    kaldi.fbank = kaldi_fbank
    transforms.Resample, transforms.Spectrogram, transforms.InverseSpectrogram = Resample, Spectrogram, InverseSpectrogram
    transforms.TimeStretch = TimeStretch
    functional.resample = resample
    return True


install_torchaudio_standin()

import chatterbox.models.s3gen.s3gen as s3gen_module  # noqa: E402 - after the stand-in
import perth  # noqa: E402
import s3tokenizer.model_v2 as s3tokenizer_v2  # noqa: E402
from chatterbox.models.s3gen import S3Gen  # noqa: E402
from chatterbox.models.t3 import T3  # noqa: E402
from chatterbox.models.t3.llama_configs import LLAMA_520M_CONFIG_DICT, LLAMA_CONFIGS  # noqa: E402
from chatterbox.models.t3.modules.perceiver import Perceiver  # noqa: E402
from chatterbox.models.t3.modules.t3_config import T3Config  # noqa: E402
from chatterbox.models.tokenizers import EnTokenizer  # noqa: E402
from chatterbox.models.voice_encoder import VoiceEncoder  # noqa: E402
from chatterbox.tts import ChatterboxTTS, Conditionals  # noqa: E402

__all__ = ["ChatterboxTTS", "Conditionals", "S3Gen", "T3", "T3Config", "VoiceEncoder", "EnTokenizer",
           "build_models", "install_torchaudio_standin", "kaldi_fbank", "load_reference", "read_dims", "resample"]


# --- building the models with recorded dimensions ---------------------------------------------

def read_dims(checkpoint_dir: Path) -> dict | None:
    path = Path(checkpoint_dir) / RANDOM_DIMS_FILE
    return json.loads(path.read_text()) if path.exists() else None


def _llama_config_name(llama: dict) -> str:
    """Register the recorded Llama sizes under their own name in the package's LLAMA_CONFIGS."""
    name = "tritone_" + "_".join(f"{key}{llama[key]}" for key in sorted(llama))
    LLAMA_CONFIGS.setdefault(name, {**LLAMA_520M_CONFIG_DICT, **llama})
    return name


def build_t3(dims: dict | None) -> T3:
    if dims is None:
        return T3()
    hp = T3Config(text_tokens_dict_size=dims["text_tokens_dict_size"])
    hp.llama_config_name = _llama_config_name(dims["llama"])
    t3 = T3(hp)
    if t3.dim != 1024:  # the perceiver's sizes are written into its constructor's defaults
        t3.cond_enc.perceiver = Perceiver(32, t3.dim, t3.dim, dims["perceiver_heads"])
    return t3


@contextlib.contextmanager
def _sized(owner, name: str, **overrides):
    """While inside, `owner.name(...)` is called with `overrides` on top of its arguments."""
    original = getattr(owner, name)
    setattr(owner, name, lambda *args, **kwargs: original(*args, **{**kwargs, **overrides}))
    try:
        yield original
    finally:
        setattr(owner, name, original)


@contextlib.contextmanager
def _tokenizer_config(dims: dict):
    """S3TokenizerV2 builds from its default ModelConfig: swap that default while S3Gen is built."""
    init = s3tokenizer_v2.S3TokenizerV2.__init__
    defaults = init.__defaults__
    init.__defaults__ = (s3tokenizer_v2.ModelConfig(n_audio_state=dims["n_audio_state"], n_audio_head=dims["n_audio_head"],
                                                    n_audio_layer=dims["n_audio_layer"]),)
    try:
        yield
    finally:
        init.__defaults__ = defaults


def build_s3gen(dims: dict | None) -> S3Gen:
    if dims is None:
        return S3Gen()
    from chatterbox.models.s3gen.transformer.upsample_encoder import PreLookaheadLayer, Upsample1D

    enc, est, hift = dims["encoder"], dims["estimator"], dims["hift"]
    with contextlib.ExitStack() as stack:
        stack.enter_context(_tokenizer_config(dims["tokenizer"]))
        stack.enter_context(_sized(s3gen_module, "UpsampleConformerEncoder", input_size=enc["output_size"],
                                   output_size=enc["output_size"], attention_heads=enc["attention_heads"],
                                   linear_units=enc["linear_units"], num_blocks=enc["num_blocks"]))
        stack.enter_context(_sized(s3gen_module, "CausalMaskedDiffWithXvec", input_size=enc["output_size"]))
        stack.enter_context(_sized(s3gen_module, "ConditionalDecoder", channels=est["channels"],
                                   attention_head_dim=est["attention_head_dim"], n_blocks=est["n_blocks"],
                                   num_mid_blocks=est["num_mid_blocks"], num_heads=est["num_heads"]))
        stack.enter_context(_sized(s3gen_module, "ConvRNNF0Predictor", cond_channels=hift["f0_channels"]))
        stack.enter_context(_sized(s3gen_module, "HiFTGenerator", base_channels=hift["base_channels"]))
        s3gen = S3Gen()
    encoder = s3gen.flow.encoder
    width = enc["output_size"]
    if width != 512:  # the lookahead conv and the upsampler hard-code the released width
        encoder.pre_lookahead_layer = PreLookaheadLayer(channels=width, pre_lookahead_len=3)
        encoder.up_layer = Upsample1D(channels=width, out_channels=width, stride=2)
    return s3gen


def build_models(dims: dict | None) -> tuple[T3, S3Gen, VoiceEncoder]:
    """The three networks, random-initialised, with `dims` (tritone_random.json) or the released sizes."""
    return build_t3(dims and dims["t3"]), build_s3gen(dims and dims["s3gen"]), VoiceEncoder()


def _load_strict(module: torch.nn.Module, state: dict, what: str, allowed_missing=()) -> None:
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [key for key in missing if not any(key.endswith(suffix) for suffix in allowed_missing)]
    if missing or unexpected:
        raise ValueError(f"{what}: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")


class Unwatermarked:
    """ChatterboxTTS's watermarker where resemble-perth's cannot load: the audio unchanged.

    perth's PerthImplicitWatermarker imports `pkg_resources`, which setuptools >= 81 no longer
    ships (the venv has 84), so perth leaves it None and ChatterboxTTS() would call None.
    """

    def apply_watermark(self, wav, watermark=None, sample_rate: int = 44100, **kwargs):
        return wav


WATERMARKS = perth.PerthImplicitWatermarker is not None  # False here (no pkg_resources)


@contextlib.contextmanager
def _watermarker():
    if WATERMARKS:
        yield
        return
    perth.PerthImplicitWatermarker = Unwatermarked
    try:
        yield
    finally:
        perth.PerthImplicitWatermarker = None


def load_reference(checkpoint_dir, device: str = "cpu") -> ChatterboxTTS:
    """ChatterboxTTS from a checkpoint folder, in eval mode on `device` (float32).

    The released checkpoint (no tritone_random.json) loads as ChatterboxTTS.from_local does; a
    random one is built with its recorded sizes and loaded strictly (every key present).
    """
    from safetensors.torch import load_file

    checkpoint_dir = Path(checkpoint_dir)
    absent = [name for name in CHECKPOINT_FILES if not (checkpoint_dir / name).exists()]
    if absent:
        raise FileNotFoundError(f"{checkpoint_dir}: no {', '.join(absent)}")
    dims = read_dims(checkpoint_dir)
    if dims is None:
        with _watermarker():
            return ChatterboxTTS.from_local(checkpoint_dir, device)
    t3, s3gen, ve = build_models(dims)
    _load_strict(ve, load_file(checkpoint_dir / "ve.safetensors"), "ve.safetensors")
    _load_strict(t3, load_file(checkpoint_dir / "t3_cfg.safetensors"), "t3_cfg.safetensors")
    _load_strict(s3gen, load_file(checkpoint_dir / "s3gen.safetensors"), "s3gen.safetensors",
                 allowed_missing=S3Gen.ignore_state_dict_missing)
    for module in (t3, s3gen, ve):
        module.to(device).eval()
    conds = None
    if (checkpoint_dir / "conds.pt").exists():
        conds = Conditionals.load(checkpoint_dir / "conds.pt", map_location=device).to(device)
    with _watermarker():
        return ChatterboxTTS(t3, s3gen, ve, EnTokenizer(str(checkpoint_dir / "tokenizer.json")), device, conds=conds)
