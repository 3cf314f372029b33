"""speech's benchmark suite (`python -m tritone.benchmarks run --family speech`): the `orpheus`
pipeline against transformers, in the same run.

Against a running server with `snac_encoder`, `snac_decoder` and `orpheus` loaded:

1. perf_analyzer over the speech recipes (orpheus streaming, snac_decoder, snac_encoder);
2. the streaming load generator (benchmarks/load.py with `client.stream_speech`) at each
   concurrency level, with a built-in voice and with a cloned one (reference codes of
   `reference_s` seconds in the prompt: a prompt of about 850 tokens for 10 s);
3. the prefill stall: `stall_streams` streams run at their steady chunk size, then a request
   cloning a `stall_reference_s` (30) seconds voice arrives; its prompt (about 2500 tokens) is
   prefilled a chunk per step beside their decoding. Their largest inter-chunk gap while it is
   prefilled (send to its first audio) is set against their largest gap before, with the LM
   step's time before and during (engine metrics);

then, with the server stopped, transformers' LlamaForCausalLM.generate() + SNAC decode on the same
weights and prompts (baseline.py here), one request at a time and statically batched; with
`--llamacpp`, llama.cpp's llama-server on the same weights and prompts at the same levels
(llamacpp.py here).

Speech stops at end_of_speech, so every system decodes greedily (top-k 1; the served sampler's
argmax equals generate()'s do_sample=False) with the same repetition penalty and `max_duration`,
and the results report the audio actually produced. The streams ask for their codes back, so the
run also says whether tritone and generate() spoke the same codes for the same requests.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tritone.benchmarks.load import SEED, StreamRecord, Workload, run_levels
from tritone.benchmarks.orpheus.llamacpp import GGUF_TYPES
from tritone.benchmarks.runner import Configurable, SuiteRun, cores, level_list
from tritone.client import SpeechRequest, stream_speech
from tritone.client.metrics import read_engine_metrics
from tritone.ensemble import tensors as T
from tritone.ensemble.orpheus.metadata import TOKENIZER_DIR, OrpheusMetadata
from tritone.export.orpheus.tiny import SENTENCES

SPEECH_LEVELS = (1, 2, 4, 8)
VOICE_MODES = ("builtin", "cloned")
VOICE = "tara"  # a speaker of orpheus-3b-0.1-ft and of the random exports
REFERENCE_TEXT = "Our flight to Lisbon departs at seven thirty tomorrow morning. Please leave a message after the tone."
REFERENCE_SEED = 3


def voice_modes(text: str) -> tuple[str, ...]:
    voices = tuple(part.strip() for part in text.split(",") if part.strip())
    if not voices or any(v not in VOICE_MODES for v in voices):
        raise argparse.ArgumentTypeError(f"expected builtin, cloned or both, got {text!r}")
    return voices


def add_arguments(group) -> list[argparse.Action]:
    """Its own `run` options."""
    return [
        group.add_argument("--voices", type=voice_modes, help="builtin,cloned (the default) or one of them"),
        group.add_argument("--clone-levels", type=level_list, help="the cloned voice's levels (default: every level)"),
        group.add_argument("--stall-streams", type=int,
                           help="running streams while a 30 s voice prompt is prefilled (default 2; 0 skips it)"),
        group.add_argument("--llamacpp", action="store_true", default=None,
                           help="also measure llama.cpp's llama-server on the same weights and prompts (built "
                                "into .cache/llamacpp/ first if needed: benchmarks/orpheus/llamacpp.py)"),
        group.add_argument("--llamacpp-gguf-type", choices=GGUF_TYPES,
                           help="llama.cpp's weights: auto (default: tritone's CPU LM dtype here), f32, bf16, f16"),
    ]


@dataclass
class Config(Configurable):
    model: str
    smoke: bool = False
    concurrency: list[int] = field(default_factory=lambda: list(SPEECH_LEVELS))
    duration: float = 3.0  # max_duration per request (greedy speech may end sooner), every system
    rounds: int = 1  # level N streams max(N * rounds, min_requests) requests through N clients
    min_requests: int = 4
    sequential_requests: int = 3  # transformers one at a time: requests measured (per voice)
    static_levels: list[int] | None = None  # transformers static batches; None: every level
    voices: tuple[str, ...] = VOICE_MODES
    clone_levels: list[int] | None = None  # the cloned voice's levels; None: every level
    reference_s: float = 10.0  # the cloned voice's reference codes
    stall_streams: int = 2  # running streams of the prefill-stall measurement (0: skip it)
    stall_reference_s: float = 30.0  # the long voice prompt prefilled beside them
    repetition_penalty: float = 1.3  # Orpheus' default
    step_steps: int = 20  # decode steps timed per batch size in the step-cost phase
    llamacpp: bool = False  # llama.cpp's llama-server beside tritone (benchmarks/orpheus/llamacpp.py)
    llamacpp_gguf_type: str = "auto"  # its weights' type; auto: the dtype tritone's CPU LM runs in here
    threads: int = field(default_factory=cores)
    perf_analyzer: bool = True
    perf_analyzer_smoke: bool = False  # the recipes' smoke settings in a full run (a CPU-sized subset)

    SMOKE = dict(duration=1.0, min_requests=2, sequential_requests=2, step_steps=3)

    def levels_for(self, mode: str) -> list[int]:
        return list(self.clone_levels or self.concurrency) if mode == "cloned" else list(self.concurrency)

    def static_for(self, mode: str) -> list[int]:
        levels = self.levels_for(mode)
        return [n for n in self.static_levels if n in levels] if self.static_levels is not None else levels

    def as_json(self) -> dict:
        data = asdict(self)
        data["duration_s"] = data.pop("duration")
        data["voices"] = list(self.voices)
        data["sentences"] = list(SENTENCES)
        data["seed"] = SEED
        data["decoding"] = "greedy (top-k 1 served; do_sample=False in transformers)"
        data["builtin_voice"] = VOICE
        data["reference_text"] = REFERENCE_TEXT
        data["static_levels"] = {mode: self.static_for(mode) for mode in self.voices}
        data["levels"] = {mode: self.levels_for(mode) for mode in self.voices}
        return data


# --- the workload ----------------------------------------------------------------------------


def reference_codes(meta: OrpheusMetadata, seconds: float, seed: int = REFERENCE_SEED) -> np.ndarray:
    """A stored voice of `seconds`: codes [7, frames] (random codes: the weights are random too;
    what the prompt costs depends on its length only)."""
    frames = max(1, round(seconds * meta.frame_rate))
    return np.random.default_rng(seed).integers(0, meta.codebook_size, (7, frames))


def builtin_voice(meta: OrpheusMetadata) -> str | None:
    return VOICE if VOICE in meta.voices else (meta.voices[0] if meta.voices else None)


def workload(meta: OrpheusMetadata, mode: str, reference_s: float,
             repetition_penalty: float) -> Callable[[int, float], list[SpeechRequest]]:
    """make_requests(count, duration): request i speaks SENTENCES[i % 8], greedily, with the
    built-in voice or cloning the reference; the same requests for tritone and the baselines."""
    voice = builtin_voice(meta) if mode == "builtin" else None
    codes = reference_codes(meta, reference_s) if mode == "cloned" else None
    transcript = REFERENCE_TEXT if mode == "cloned" else None

    def make_requests(count: int, duration: float) -> list[SpeechRequest]:
        return [SpeechRequest(text=SENTENCES[i % len(SENTENCES)], voice=voice, reference_text=transcript,
                              reference_codes=codes, max_duration=duration, top_k=1,
                              repetition_penalty=repetition_penalty, seed=SEED + i, return_codes=True)
                for i in range(count)]

    return make_requests


def describe_voice(mode: str, meta: OrpheusMetadata, reference_s: float) -> str:
    if mode == "cloned":
        seconds = reference_codes(meta, reference_s).shape[1] / meta.frame_rate
        return f"reference codes of {seconds:.1f} s and their transcript"
    return f"speaker {builtin_voice(meta)!r}"


def prompt_tokens(repository: Path, requests: list[SpeechRequest]) -> dict:
    """The prompts' lengths in tokens, as the pipeline builds them."""
    from transformers import AutoTokenizer

    from tritone.benchmarks.orpheus.baseline import prompt_ids

    version = Path(repository) / T.ORPHEUS / "1"
    tokenizer = AutoTokenizer.from_pretrained(str(version / TOKENIZER_DIR))
    fmt = OrpheusMetadata.load(version).format
    lengths = [len(prompt_ids(tokenizer, fmt, r.text, r.voice, r.reference_text, r.reference_codes)) for r in requests]
    return {"min": min(lengths), "max": max(lengths)}


def _stream(url: str, request: SpeechRequest, timeout: float):
    return stream_speech(url, request, max_chars=None, timeout=timeout)  # one request per stream, as sent


def same_codes(records: list[StreamRecord], expected: list[np.ndarray]) -> dict:
    """Whether tritone streamed, for request i, the codes generate() gave for it."""
    by_index = {r.index: r for r in records if r.error is None}
    identical = []
    for i, codes in enumerate(expected):
        record = by_index.get(i)
        if record is None:
            continue
        streamed = np.concatenate(record.codes, axis=1) if record.codes else np.zeros((7, 0), np.int64)
        identical.append(bool(streamed.shape == codes.shape and np.array_equal(streamed, codes)))
    return {"requests": len(identical), "identical": sum(identical), "per_request": identical}


# --- the prefill stall -------------------------------------------------------------------------


class RunnerEnded(RuntimeError):
    """A running stream said end_of_speech before the measurement was over."""

    def __init__(self, runner: int, seconds: float):
        super().__init__(f"running stream {runner} ended at end_of_speech after {seconds:.1f} s of audio")
        self.runner = runner


def runner_candidates(meta: OrpheusMetadata, max_duration: float) -> list[SpeechRequest]:
    """Streams to keep running: every sentence in one paragraph (rotated), greedy, no repetition
    penalty first. Greedy speech ends where the model says end_of_speech, which random weights
    may say early; the measurement then retries with the next candidate in that stream's place."""
    voices = [builtin_voice(meta), None, *[v for v in meta.voices if v != builtin_voice(meta)]]
    candidates = []
    for penalty in (1.0, 1.3):
        for voice in dict.fromkeys(voices):
            for i in range(len(SENTENCES)):
                text = " ".join(SENTENCES[i:] + SENTENCES[:i])
                candidates.append(SpeechRequest(text=text, voice=voice, max_duration=max_duration, top_k=1,
                                                repetition_penalty=penalty, seed=SEED + i))
    return candidates


def _gap_stats(gaps: list[float]) -> dict:
    return {"max": max(gaps) if gaps else None, "p50": float(np.median(gaps)) if gaps else None, "count": len(gaps)}


async def prefill_stall(grpc_url: str, metrics_url: str, meta: OrpheusMetadata, server_parameters: dict, *,
                        streams: int = 2, reference_s: float = 30.0, repetition_penalty: float = 1.3,
                        timeout: float = 900.0, max_attempts: int = 12, log=print) -> dict:
    """Running streams' inter-chunk gaps before and while a long voice prompt is prefilled; a
    running stream that ends at end_of_speech too soon is replaced by the next candidate and the
    measurement starts over (at most `max_attempts` times)."""
    candidates = runner_candidates(meta, float(server_parameters.get("max_duration_s") or 60))
    ended: set[int] = set()
    for attempt in range(1, max_attempts + 1):
        chosen = [k for k in range(len(candidates)) if k not in ended][:streams]
        if len(chosen) < streams:
            break
        try:
            result = await _prefill_stall_once(grpc_url, metrics_url, meta, server_parameters,
                                               [candidates[k] for k in chosen], reference_s, repetition_penalty,
                                               timeout, log)
        except RunnerEnded as error:
            log(f"    {error}: trying another running stream")
            ended.add(chosen[error.runner])
            continue
        result["attempts"] = attempt
        during, before = result["gap_during_s"]["max"], result["gap_before_s"]["max"]
        log(f"    {result['prefill_tokens']} prompt tokens, first audio after {result['long_prompt_ttfa_s']:.2f} s; the "
            f"running streams' largest gap {_s(during)} s (before: {_s(before)} s), {result['chunks_during']} chunks "
            f"meanwhile")
        return result
    raise RuntimeError(f"no {streams} running streams lasted the measurement in {max_attempts} attempts "
                       f"({len(ended)} ended at end_of_speech)")


async def _prefill_stall_once(grpc_url: str, metrics_url: str, meta: OrpheusMetadata, server_parameters: dict,
                              runners: list[SpeechRequest], reference_s: float, repetition_penalty: float,
                              timeout: float, log) -> dict:
    steady_frames = int(server_parameters.get("max_chunk_frames") or 24)
    steady_s = steady_frames * meta.frame_samples / meta.sample_rate
    codes = reference_codes(meta, reference_s)
    cloned = SpeechRequest(text=SENTENCES[0], reference_text=REFERENCE_TEXT, reference_codes=codes, max_duration=0.5,
                           top_k=1, repetition_penalty=repetition_penalty, seed=SEED)
    arrivals: list[list[tuple[float, float]]] = [[] for _ in runners]
    cloned_arrivals: list[float] = []
    errors: list[str] = []

    async def consume(request, record):
        try:
            async for chunk in _stream(grpc_url, request, timeout):
                record(chunk)
        except Exception as error:  # noqa: BLE001 - reported, and the measurement stops waiting
            errors.append(f"{type(error).__name__}: {error}")

    def steady(i: int) -> int:
        return sum(1 for _, seconds in arrivals[i] if seconds >= steady_s - 1e-6)

    deadline = time.perf_counter() + timeout

    async def until(condition, what: str):
        while not condition():
            if errors:
                raise RuntimeError(f"a stream failed {what}: {errors[0]}")
            for i, task in enumerate(tasks):
                if task.done():
                    raise RunnerEnded(i, sum(seconds for _, seconds in arrivals[i]))
            if time.perf_counter() > deadline:
                raise TimeoutError(f"timed out {what}")
            await asyncio.sleep(0.005)

    async def metrics():
        values = await asyncio.to_thread(read_engine_metrics, metrics_url, T.ORPHEUS)
        return time.perf_counter(), values

    tasks = [asyncio.create_task(consume(r, lambda c, a=a: a.append((time.perf_counter(), c.seconds))))
             for r, a in zip(runners, arrivals)]
    cloned_task = None
    try:
        await until(lambda: all(arrivals), "waiting for the streams' first audio")
        t1, m1 = await metrics()  # from here to the long prompt, the LM steps only the running streams
        await until(lambda: all(steady(i) >= 2 for i in range(len(runners))), "reaching steady chunks")
        submitted, m2 = await metrics()
        log(f"  {len(runners)} streams at steady {steady_frames}-frame chunks; sending a {reference_s:g} s voice "
            f"prompt ...")
        cloned_task = asyncio.create_task(consume(cloned, lambda c: cloned_arrivals.append(time.perf_counter())))
        await until(lambda: bool(cloned_arrivals), "waiting for the long prompt's first audio")
        first_audio = cloned_arrivals[0]
        _, m3 = await metrics()
        await until(lambda: all(a[-1][0] > first_audio for a in arrivals), "waiting for the streams' next chunk")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if cloned_task is not None:
            await asyncio.gather(cloned_task, return_exceptions=True)

    before, during, chunks_during = [], [], 0
    for a in arrivals:
        times = [t for t, _ in a]
        for k in range(1, len(a)):
            if a[k][0] <= submitted and a[k][1] >= steady_s - 1e-6:
                before.append(times[k] - times[k - 1])
            if times[k] > submitted and times[k - 1] < first_audio:
                during.append(times[k] - times[k - 1])
        chunks_during += sum(1 for t in times if submitted <= t <= first_audio)

    def ms_per_step(t_start, m_start, t_end, m_end):
        steps = m_end.get("tritone_decode_steps_total", 0.0) - m_start.get("tritone_decode_steps_total", 0.0)
        return (t_end - t_start) / steps * 1e3 if steps else None

    gap_before, gap_during = _gap_stats(before), _gap_stats(during)
    return {
        "streams": len(runners),
        "runner_voice": ", ".join(sorted({f"speaker {r.voice!r}" if r.voice else "default voice" for r in runners})),
        "runner_prompts": [{"text": r.text[:40] + "...", "voice": r.voice, "repetition_penalty": r.repetition_penalty}
                           for r in runners],
        "steady_chunk_frames": steady_frames,
        "steady_chunk_s": steady_s,
        "reference_s": codes.shape[1] / meta.frame_rate,
        "prefill_tokens": int(m3.get("tritone_prefill_tokens_total", 0) - m2.get("tritone_prefill_tokens_total", 0)),
        "long_prompt_ttfa_s": first_audio - submitted,  # its prefill, then its first chunk
        "gap_before_s": gap_before,
        "gap_during_s": gap_during,
        "stall_ratio": gap_during["max"] / gap_before["max"] if gap_before["max"] and gap_during["max"] else None,
        "chunks_during": chunks_during,
        "ms_per_step": {"before": ms_per_step(t1, m1, submitted, m2),
                        "during": ms_per_step(submitted, m2, first_audio, m3)},
        "errors": errors,
    }


def _s(value) -> str:
    return "-" if value is None else f"{value:.3g}"


# --- the suite -------------------------------------------------------------------------------


def workload_for(config: Config, repository: Path) -> Workload:
    """The built-in voice's streams as `run` measures them, for recipes that serve variants."""
    meta = OrpheusMetadata.load(Path(repository) / T.ORPHEUS / "1")
    return Workload(workload(meta, VOICE_MODES[0], config.reference_s, config.repetition_penalty), _stream, T.ORPHEUS)


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
    """Measure speech; results.json gets (or replaces) its "speech" section, results.md and the
    plots are written into `out_dir` with the music run's kept."""
    repository = Path(repository)
    bench = SuiteRun(log)
    say = bench.say
    meta = OrpheusMetadata.load(repository / T.ORPHEUS / "1")
    results = bench.begin(config, meta.checkpoint, T.ORPHEUS, grpc_url, out_dir)

    workloads = {mode: workload(meta, mode, config.reference_s, config.repetition_penalty) for mode in config.voices}
    voices, records = {}, {}
    with bench.phase("tritone_load"):
        for i, mode in enumerate(config.voices):
            levels = config.levels_for(mode)
            say(f"tritone speech, {describe_voice(mode, meta, config.reference_s)}: concurrency {levels}, "
                f"up to {config.duration:g} s per request")
            records[mode] = {}
            voices[mode] = {
                "description": describe_voice(mode, meta, config.reference_s),
                "prompt_tokens": prompt_tokens(repository, workloads[mode](len(SENTENCES), config.duration)),
                "tritone": {"system": "tritone on Triton (gRPC streaming, in-flight batching, chunked prefill)",
                            "levels": asyncio.run(run_levels(
                                grpc_url, metrics_url, levels, workloads[mode], config.duration, stream=_stream,
                                engine=T.ORPHEUS, rounds=config.rounds, min_requests=config.min_requests,
                                warmup=i == 0, records=records[mode], log=say))},
            }

    if config.stall_streams > 0:
        with bench.phase("prefill_stall"):
            say(f"prefill stall: {config.stall_streams} running streams, a {config.stall_reference_s:g} s voice prompt")
            try:
                results["prefill_stall"] = asyncio.run(prefill_stall(
                    grpc_url, metrics_url, meta, results["server"].get(f"{T.ORPHEUS}_parameters") or {},
                    streams=config.stall_streams, reference_s=config.stall_reference_s,
                    repetition_penalty=config.repetition_penalty, log=say))
            except Exception as error:  # a result to report, not the end of the run
                say(f"  prefill stall: {type(error).__name__}: {error}")
                results["prefill_stall"] = {"error": f"{type(error).__name__}: {error}"}

    bench.go_local(stop_server)
    from tritone.benchmarks.orpheus.baseline import load_speech_baseline, run_speech_baselines
    from tritone.benchmarks.orpheus.step_cost import engine_step_cost

    with bench.phase("engine_step_cost"):  # before transformers: this process's torch stays on one thread meanwhile
        levels = config.levels_for(VOICE_MODES[0])
        say(f"engine decode step (local, no Triton) with {levels} streams ...")
        results["step_cost"] = engine_step_cost(repository, levels, steps=config.step_steps, log=say)

    with bench.phase("transformers_baselines"):
        say(f"transformers speech baselines on {repository / T.ORPHEUS / '1'} ({config.threads} threads) ...")
        baseline = load_speech_baseline(repository, config.threads)
        for mode in config.voices:
            say(f"  {describe_voice(mode, meta, config.reference_s)}:")
            voices[mode]["baseline"], codes = run_speech_baselines(
                baseline, workloads[mode], config.levels_for(mode), config.duration,
                repetition_penalty=config.repetition_penalty, sequential_requests=config.sequential_requests,
                static_levels=config.static_for(mode), log=say)
            first = min(records[mode]) if records[mode] else None
            voices[mode]["same_codes"] = same_codes(records[mode].get(first, []), codes) if first else None
        del baseline
    results["voices"] = voices

    if config.llamacpp:
        from tritone.benchmarks.orpheus.llamacpp import run_llamacpp

        with bench.phase("llamacpp"):
            bench.check_quiet("before llama.cpp")  # its threads' barriers suffer most from other work on the cores
            say(f"llama.cpp's llama-server on the same weights and prompts ({config.threads} threads) ...")
            results["llamacpp"] = run_llamacpp(
                repository, repository.parent, workloads, {mode: config.levels_for(mode) for mode in config.voices},
                duration=config.duration, repetition_penalty=config.repetition_penalty, rounds=config.rounds,
                min_requests=config.min_requests, threads=config.threads, gguf_type=config.llamacpp_gguf_type,
                log=say)
    return bench.finish(results, out_dir)
