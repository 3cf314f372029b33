"""What a user would run instead: the chatterbox-tts package's own `ChatterboxTTS.generate`, one
request at a time, as a FastAPI wrapper around it serves.

On the very weights tritone serves (`chatterbox/1/checkpoint`, written by the export for the random
checkpoints; the released checkpoint's files otherwise), loaded by
`tritone.export.chatterbox.reference.load_reference` (the package with its torchaudio stand-in),
fp32 eval on torch.set_num_threads(cores), with the same texts, voices and sampling as the served
requests (suite.SAMPLING: the package's defaults) and torch seeded with request i's seed:

- **the same length cap.** `generate()` asks T3 for up to 1000 speech tokens (its hard-coded
  `max_new_tokens`); the served request stops at `max_duration` in tokens (floor(max_duration x 25),
  and no further than T3's speech positions: ChatterboxParams.token_limit and
  ChatterboxPipeline.token_limit). While a request is spoken, `capped` replaces `t3.inference` on the
  model instance by a call to the same method with `max_new_tokens` set to that limit (everything
  else as generate() passes it), so both systems sample at most as many tokens and decode (S3Gen
  flow + HiFT over the whole answer) as much audio; either may stop sooner at the stop token;
- **voices.** The built-in voice is the checkpoint's conds.pt (the model's `conds`). A cloned voice
  is what `prepare_conditionals(wav_path)` makes of the clip (written once to a WAV file): like the
  server, which computes a clip's conditioning once and caches it by content, it is computed once,
  in the warm-up (both systems warm up with each voice before measuring, so both measure speech
  with the clip's conditioning cached), and its time is reported apart (`clip_encode_s`);
- nothing streams: a request's time to first audio is its whole latency, queued behind the clients
  before it (benchmarks/baseline.py sequential_result). Throughput is all audio over the sum of
  service times. The package's watermark is off on both sides (resemble-perth cannot load here;
  tritone does not watermark).
"""

from __future__ import annotations

import functools
import hashlib
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tritone.benchmarks.baseline import sequential_result
from tritone.ensemble import tensors as T
from tritone.ensemble.chatterbox.metadata import CHECKPOINT_DIR, ChatterboxMetadata
from tritone.ensemble.chatterbox.request import ChatterboxParams

SYSTEM = "chatterbox-tts ChatterboxTTS.generate (T3 sampling, S3Gen flow + HiFT over the whole answer), one at a time"


@dataclass
class ChatterboxBaseline:
    """The package's model loaded as a user loads it, and the export's metadata."""

    tts: object  # chatterbox.tts.ChatterboxTTS
    meta: ChatterboxMetadata
    checkpoint_dir: Path
    builtin: object  # the checkpoint's Conditionals (conds.pt)
    clips: dict = field(default_factory=dict)  # clip digest -> its Conditionals, once computed
    encode_s: dict = field(default_factory=dict)  # clip digest -> seconds prepare_conditionals took
    scratch: tempfile.TemporaryDirectory = field(default_factory=tempfile.TemporaryDirectory)


def checkpoint_dir(repository: Path, meta: ChatterboxMetadata) -> Path:
    """The weights tritone serves: chatterbox/1/checkpoint when the export wrote it, else the checkpoint's files."""
    version = Path(repository) / T.CHATTERBOX / "1"
    saved = version / CHECKPOINT_DIR
    if (saved / "t3_cfg.safetensors").is_file():
        return saved
    from tritone.export.chatterbox.export import checkpoint_folder

    return checkpoint_folder(meta.checkpoint, version)


def load_chatterbox_baseline(repository: Path, threads: int | None = None) -> ChatterboxBaseline:
    import torch

    from tritone.export.chatterbox.reference import load_reference

    if threads:
        torch.set_num_threads(threads)
    meta = ChatterboxMetadata.load(Path(repository) / T.CHATTERBOX / "1")
    folder = checkpoint_dir(repository, meta)
    tts = load_reference(folder)
    return ChatterboxBaseline(tts, meta, folder, tts.conds)


def token_limit(meta: ChatterboxMetadata, max_duration: float) -> int:
    """The served request's token cap (ChatterboxPipeline.token_limit): max_duration in tokens, within T3's
    positions."""
    return min(ChatterboxParams(text="", max_duration=max_duration).token_limit(meta), meta.max_speech_tokens)


@contextmanager
def capped(tts, max_new_tokens: int):
    """generate() with T3 sampling at most `max_new_tokens` tokens (it hard-codes 1000), and its
    per-token progress bar quiet (a run's log, not a terminal)."""
    inference = tts.t3.inference
    module = sys.modules[type(tts.t3).__module__]
    progress = module.tqdm
    module.tqdm = functools.partial(progress, disable=True)

    def limited(*args, **kwargs):
        kwargs["max_new_tokens"] = max_new_tokens
        return inference(*args, **kwargs)

    tts.t3.inference = limited  # an instance attribute: generate()'s self.t3.inference finds it first
    try:
        yield
    finally:
        del tts.t3.inference
        module.tqdm = progress


def _conditionals(baseline: ChatterboxBaseline, clip: np.ndarray | None, exaggeration: float):
    """The request's voice as generate() takes it: the built-in conds, or the clip's (computed on first use)."""
    if clip is None:
        return baseline.builtin
    key = _digest(clip)
    if key not in baseline.clips:
        import soundfile

        path = Path(baseline.scratch.name) / f"{key[:16]}.wav"
        if not path.exists():
            soundfile.write(path, clip, baseline.meta.sample_rate, subtype="FLOAT")
        started = time.perf_counter()
        baseline.tts.prepare_conditionals(str(path), exaggeration=exaggeration)
        baseline.encode_s[key] = time.perf_counter() - started
        baseline.clips[key] = baseline.tts.conds
    return baseline.clips[key]


def _digest(clip: np.ndarray | None) -> str | None:
    return None if clip is None else hashlib.sha256(np.ascontiguousarray(clip, np.float32).tobytes()).hexdigest()


def speak(baseline: ChatterboxBaseline, request, seed: int | None = None) -> tuple[float, float]:
    """One request (a SpeechRequest: text, reference_audio, max_duration and sampling) through
    generate(), capped as served. Returns (wall seconds, seconds of audio)."""
    import torch

    tts = baseline.tts
    started = time.perf_counter()
    tts.conds = _conditionals(baseline, request.reference_audio, request.exaggeration)
    if seed is not None:
        torch.manual_seed(seed)
    with capped(tts, token_limit(baseline.meta, request.max_duration)), torch.inference_mode():
        wav = tts.generate(request.text, repetition_penalty=request.repetition_penalty, min_p=request.min_p,
                           top_p=request.top_p, exaggeration=request.exaggeration, cfg_weight=request.cfg_weight,
                           temperature=request.temperature)
    return time.perf_counter() - started, wav.shape[-1] / tts.sr


def run_chatterbox_baseline(baseline: ChatterboxBaseline, make_requests, levels: list[int], duration: float, *,
                            sequential_requests: int = 3, log=print) -> dict:
    """`sequential_requests` of `make_requests(count, duration)` one at a time, after one short
    unmeasured warm-up with the same voice (a clip's conditioning is computed there, timed apart)."""
    warmup = make_requests(1, min(duration, 0.5))[0]
    speak(baseline, warmup, seed=warmup.seed)

    log(f"  chatterbox-tts one at a time: {sequential_requests} requests of up to {duration:g} s ...")
    service, audio = [], []
    for request in make_requests(sequential_requests, duration):
        wall, seconds = speak(baseline, request, seed=request.seed)
        service.append(wall)
        audio.append(seconds)
    result = sequential_result(service, sum(audio), levels, audio_s_per_request=audio,
                               token_limit=token_limit(baseline.meta, duration),
                               clip_encode_s=baseline.encode_s.get(_digest(warmup.reference_audio)))
    log(f"    {np.median(service):.3g} s per request, {result['audio_s_per_wall_s']:.3g} audio s/s")
    return {"system": SYSTEM, "sequential": result, "static": []}
