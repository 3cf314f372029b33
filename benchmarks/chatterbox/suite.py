"""chatterbox's benchmark suite (`python -m tritone.benchmarks run --family chatterbox`): the
`chatterbox` pipeline against the chatterbox-tts package's own generation, in the same run.

Against a running server with `chatterbox_voice`, `chatterbox_flow`, `chatterbox_vocoder`,
`chatterbox_codec` and `chatterbox` loaded:

1. perf_analyzer over the family's recipes, when asked (`--perf-analyzer`; off by default:
   benchmarks/recipes/ holds none for its models yet);
2. the streaming load generator (benchmarks/load.py with `client.stream_speech`, model
   `chatterbox`, one request per stream) at each concurrency level (1, 4, 8), with the
   checkpoint's **built-in voice** (its conds.pt) and with a **cloned voice** (a `reference_s`
   second clip sent as `reference_audio` in every request; the server turns it into its
   conditioning once per clip and caches it by content). Each voice starts with an unmeasured
   warm-up of two short requests (the clip's conditioning is computed there), as the baseline does;

then, with the server stopped, `ChatterboxTTS.generate` on the same weights, texts, voices,
sampling and length cap, one request at a time (baseline.py here).

Chatterbox samples (temperature 0.8, min-p 0.05, guidance 0.5, repetition penalty 1.2: the
package's defaults, sent explicitly to both systems); each request is capped at `duration` seconds
(`max_duration`, in speech tokens at 25 a second) and may end sooner at the stop token, so the
tables report the audio each request produced and throughput counts the audio produced. Both
systems seed request i with SEED + i, but their random draws differ: the audio is comparable in
length and cost, not sample for sample.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tritone.benchmarks.load import SEED, Workload, run_levels
from tritone.benchmarks.runner import Configurable, SuiteRun, cores
from tritone.client import SpeechRequest, stream_speech
from tritone.ensemble import tensors as T
from tritone.ensemble.chatterbox.metadata import ChatterboxMetadata
from tritone.export.chatterbox.tiny import SENTENCES, synthetic_voice

LEVELS = (1, 4, 8)
VOICE_MODES = ("builtin", "cloned")
REFERENCE_SEED = 7  # the cloned voice's clip (a synthetic voice-like clip: its cost depends on its length only)
# The package's defaults (ChatterboxTTS.generate), sent explicitly to both systems.
SAMPLING = dict(exaggeration=0.5, cfg_weight=0.5, temperature=0.8, min_p=0.05, top_p=1.0, repetition_penalty=1.2)


def voice_modes(text: str) -> tuple[str, ...]:
    voices = tuple(part.strip() for part in text.split(",") if part.strip())
    if not voices or any(v not in VOICE_MODES for v in voices):
        raise argparse.ArgumentTypeError(f"expected builtin, cloned or both, got {text!r}")
    return voices


def add_arguments(group) -> list[argparse.Action]:
    """Its own `run` options (`--voices` is speech's too: each family's group holds its own, so the
    flag names differ)."""
    return [
        group.add_argument("--chatterbox-voices", dest="chatterbox_voices", type=voice_modes,
                           help="builtin,cloned (the default) or one of them"),
        group.add_argument("--reference-seconds", dest="reference_s", type=float,
                           help="the cloned voice's clip length in seconds (default 8)"),
    ]


@dataclass
class Config(Configurable):
    model: str
    smoke: bool = False
    concurrency: list[int] = field(default_factory=lambda: list(LEVELS))
    duration: float = 3.0  # max_duration per request (speech may stop sooner), both systems
    rounds: int = 1  # level N streams max(N * rounds, min_requests) requests through N clients
    min_requests: int = 4
    sequential_requests: int = 3  # the package one at a time: requests measured (per voice)
    static_levels: list[int] | None = None  # refused when set: ChatterboxTTS.generate speaks one text at a time
    chatterbox_voices: tuple[str, ...] = VOICE_MODES
    reference_s: float = 8.0  # the cloned voice's clip
    threads: int = field(default_factory=cores)
    perf_analyzer: bool = False  # no recipes for chatterbox's models yet
    perf_analyzer_smoke: bool = False

    SMOKE = dict(duration=1.0, min_requests=2, sequential_requests=2)

    def __post_init__(self):
        if self.static_levels:
            raise ValueError("static_levels: the chatterbox-tts package generates one text at a time; there is no "
                             "statically batched baseline to measure (leave --static-levels out)")
        if not 1.0 <= self.reference_s <= 30.0:
            raise ValueError(f"reference_s: a reference clip lasts 1 to 30 s, got {self.reference_s:g}")

    @property
    def voices(self) -> tuple[str, ...]:
        return tuple(self.chatterbox_voices)

    def as_json(self) -> dict:
        data = asdict(self)
        data["duration_s"] = data.pop("duration")
        data["voices"] = list(self.voices)
        data.pop("chatterbox_voices")
        data.pop("static_levels")
        data["sentences"] = list(SENTENCES)
        data["seed"] = SEED
        data["sampling"] = dict(SAMPLING)
        data["reference_seed"] = REFERENCE_SEED
        return data


# --- the workload ----------------------------------------------------------------------------


def reference_clip(seconds: float, sample_rate: int) -> np.ndarray:
    """The cloned voice: float32 mono at the model's rate."""
    return synthetic_voice(seconds=seconds, sample_rate=sample_rate, seed=REFERENCE_SEED)


def workload(meta: ChatterboxMetadata, mode: str, reference_s: float) -> Callable[[int, float], list[SpeechRequest]]:
    """make_requests(count, duration): request i speaks SENTENCES[i % len] with seed SEED + i, with
    the built-in voice or cloning the clip; the same requests for tritone and the baseline."""
    clip = reference_clip(reference_s, meta.sample_rate) if mode == "cloned" else None

    def make_requests(count: int, duration: float) -> list[SpeechRequest]:
        return [SpeechRequest(text=SENTENCES[i % len(SENTENCES)], reference_audio=clip, max_duration=duration,
                              seed=SEED + i, **SAMPLING)
                for i in range(count)]

    return make_requests


def describe_voice(mode: str, meta: ChatterboxMetadata, reference_s: float) -> str:
    if mode == "cloned":
        return f"a {reference_s:g} s reference clip sent as reference_audio"
    return f"the built-in voice {meta.voices[0]!r}" if meta.voices else "no built-in voice"


def _stream(url: str, request: SpeechRequest, timeout: float):
    return stream_speech(url, request, model=T.CHATTERBOX, max_chars=None, timeout=timeout)  # one request per stream


def workload_for(config: Config, repository: Path) -> Workload:
    """The built-in voice's streams as `run` measures them, for recipes that serve variants."""
    meta = ChatterboxMetadata.load(Path(repository) / T.CHATTERBOX / "1")
    return Workload(workload(meta, VOICE_MODES[0], config.reference_s), _stream, T.CHATTERBOX)


# --- the suite -------------------------------------------------------------------------------


def run(
    config: Config,
    repository: Path,
    grpc_url: str,
    metrics_url: str,
    out_dir: Path,
    *,
    stop_server: Callable[[], object] | None = None,
    log=print,
) -> dict:
    """Measure chatterbox; results.json gets (or replaces) its "chatterbox" section, results.md and
    the plots are written into `out_dir` with the other families' kept."""
    repository = Path(repository)
    bench = SuiteRun(log)
    say = bench.say
    meta = ChatterboxMetadata.load(repository / T.CHATTERBOX / "1")
    if "builtin" in config.voices and not meta.voices:
        raise ValueError(f"voices: {meta.checkpoint} has no built-in voice; run --chatterbox-voices cloned")
    results = bench.begin(config, meta.checkpoint, T.CHATTERBOX, grpc_url, out_dir)

    workloads = {mode: workload(meta, mode, config.reference_s) for mode in config.voices}
    voices = {}
    with bench.phase("tritone_load"):
        for mode in config.voices:
            say(f"tritone chatterbox, {describe_voice(mode, meta, config.reference_s)}: concurrency "
                f"{config.concurrency}, up to {config.duration:g} s per request")
            voices[mode] = {
                "description": describe_voice(mode, meta, config.reference_s),
                "tritone": {"system": "tritone on Triton (gRPC streaming, in-flight batching)",
                            "levels": asyncio.run(run_levels(
                                grpc_url, metrics_url, config.concurrency, workloads[mode], config.duration,
                                stream=_stream, engine=T.CHATTERBOX, rounds=config.rounds,
                                min_requests=config.min_requests, warmup=True, log=say))},
            }

    bench.go_local(stop_server)
    from tritone.benchmarks.chatterbox.baseline import load_chatterbox_baseline, run_chatterbox_baseline

    with bench.phase("reference_baseline"):
        baseline = load_chatterbox_baseline(repository, config.threads)
        say(f"chatterbox-tts ChatterboxTTS.generate on {baseline.checkpoint_dir} ({config.threads} threads) ...")
        for mode in config.voices:
            say(f"  {describe_voice(mode, meta, config.reference_s)}:")
            voices[mode]["baseline"] = run_chatterbox_baseline(
                baseline, workloads[mode], config.concurrency, config.duration,
                sequential_requests=config.sequential_requests, log=say)
        del baseline
    results["voices"] = voices
    return bench.finish(results, out_dir)
