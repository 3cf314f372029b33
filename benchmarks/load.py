"""An audio-aware streaming load generator for the decoupled pipelines (gRPC, asyncio).

For each concurrency level N, N closed-loop clients share a list of requests (the same prompts,
durations and seeds for every system, see `workload`) and stream them over Triton's gRPC
bidirectional stream with the family's streaming call (`run_levels(..., stream=, engine=)`: music's
`client.stream_music` in benchmarks/musicgen/load.py, speech's `client.stream_speech` in
benchmarks/orpheus/suite.py). Per stream it records when each chunk arrived and how much audio it
held, and from that:

- time to first audio (send -> first chunk);
- real-time factor (stream wall time / audio seconds; < 1 is faster than real time);
- underruns of a player that starts playing when the first chunk arrives: a chunk that arrives
  after the audio already received has finished playing is an underrun, and the player stalls
  until it arrives (the stall seconds are summed);

and per level: aggregate seconds of audio per wall second (all audio / first send to last
chunk) and the server's decode-batch occupancy, the delta of the engine's metrics
`tritone_decode_request_steps_total / tritone_decode_steps_total` over the level (the metrics
of the model streamed, by its `model` label).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import numpy as np

from tritone.client import GenerationError
from tritone.client.metrics import read_engine_metrics

SEED = 1000  # request i of a workload uses seed SEED + i, for every system
METRICS = ("tritone_decode_steps_total", "tritone_decode_request_steps_total", "tritone_decode_batch_requests_max",
           "tritone_decode_step_seconds_sum")


# --- one stream -----------------------------------------------------------------------


@dataclass
class StreamRecord:
    index: int
    sent: float
    arrivals: list[tuple[float, float]] = field(default_factory=list)  # (perf_counter, seconds of audio)
    finished: float | None = None
    error: str | None = None
    codes: list[np.ndarray] = field(default_factory=list)  # the chunks' codes, when the request asks for them

    @property
    def audio_seconds(self) -> float:
        return sum(seconds for _, seconds in self.arrivals)

    @property
    def time_to_first_audio(self) -> float | None:
        return self.arrivals[0][0] - self.sent if self.arrivals else None

    @property
    def real_time_factor(self) -> float | None:
        if self.finished is None or not self.audio_seconds:
            return None
        return (self.finished - self.sent) / self.audio_seconds


def underruns(arrivals: list[tuple[float, float]]) -> tuple[int, float]:
    """(chunks that arrived after the player ran dry, total stall seconds).

    The player starts when the first chunk arrives and plays continuously; when it reaches the
    end of what it has received it stalls until the next chunk arrives, then plays on."""
    if not arrivals:
        return 0, 0.0
    count, stall = 0, 0.0
    start, seconds = arrivals[0]
    played_until = start + seconds  # wall time at which the audio received so far has finished
    for arrived, seconds in arrivals[1:]:
        if arrived > played_until:
            count += 1
            stall += arrived - played_until
            played_until = arrived
        played_until += seconds
    return count, stall


# (url, request, timeout) -> its audio chunks: the family's streaming call (client.stream_music, ...)
StreamFunction = Callable[[str, object, float], AsyncIterator]


@dataclass(frozen=True)
class Workload:
    """A family's streams as its suite measures them: `make_requests(count, duration)`, `stream` (one request
    over gRPC), and `engine`, the model whose engine metrics are read (for recipes that serve variants)."""

    make_requests: Callable[[int, float], list]
    stream: StreamFunction
    engine: str


async def stream_one(url: str, index: int, request, timeout: float, stream: StreamFunction) -> StreamRecord:
    record = StreamRecord(index, time.perf_counter())
    try:
        async for chunk in stream(url, request, timeout):
            record.arrivals.append((time.perf_counter(), chunk.seconds))
            if chunk.codes is not None:
                record.codes.append(chunk.codes)
        record.finished = time.perf_counter()
    except GenerationError as error:
        record.error = str(error)
    except Exception as error:  # a broken stream is a result to report, not a crash of the run
        record.error = f"{type(error).__name__}: {error}"
    return record


# --- one concurrency level ------------------------------------------------------------


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "mean": None, "max": None}
    array = np.asarray(values, dtype=np.float64)
    return {
        "p50": float(np.percentile(array, 50)),
        "p95": float(np.percentile(array, 95)),
        "p99": float(np.percentile(array, 99)),
        "mean": float(array.mean()),
        "max": float(array.max()),
    }


async def run_level(
    grpc_url: str,
    metrics_url: str | None,
    concurrency: int,
    requests: list,
    timeout: float = 1800.0,
    *,
    stream: StreamFunction,
    engine: str,
    records: list[StreamRecord] | None = None,
) -> dict:
    """`concurrency` closed-loop clients stream `requests` (in order, each taking the next one);
    `engine` is the model whose engine metrics are read. `records`, when given, receives the streams."""
    before = read_engine_metrics(metrics_url, engine) if metrics_url else {}
    pending = list(enumerate(requests))
    records = [] if records is None else records

    async def client():
        while pending:
            index, request = pending.pop(0)
            records.append(await stream_one(grpc_url, index, request, timeout, stream))

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    ended = max([r.finished or r.sent for r in records] + [started])
    after = read_engine_metrics(metrics_url, engine) if metrics_url else {}
    return summarize_level(concurrency, records, started, ended, before, after)


def level_counts(concurrency: int, records: list, done: list) -> dict:
    """What every level's summary starts with: its streams, the requests sent and completed, their errors."""
    return {"concurrency": concurrency, "requests": len(records), "completed": len(done),
            "errors": sorted({r.error for r in records if r.error})}


def summarize_level(concurrency: int, records: list[StreamRecord], started: float, ended: float,
                    before: dict[str, float], after: dict[str, float]) -> dict:
    done = [r for r in records if r.error is None and r.arrivals]
    stalls = [underruns(r.arrivals) for r in done]
    audio = sum(r.audio_seconds for r in done)
    wall = ended - started
    steps = after.get(METRICS[0], 0.0) - before.get(METRICS[0], 0.0)
    request_steps = after.get(METRICS[1], 0.0) - before.get(METRICS[1], 0.0)
    step_seconds = after.get(METRICS[3], 0.0) - before.get(METRICS[3], 0.0)
    rtfs = [r.real_time_factor for r in done if r.real_time_factor is not None]
    return {
        **level_counts(concurrency, records, done),
        "time_to_first_audio_s": percentiles([r.time_to_first_audio for r in done]),
        "real_time_factor": percentiles(rtfs),  # per stream: wall / audio, lower is better
        "x_real_time_per_stream_p50": (1.0 / float(np.median(rtfs))) if rtfs else None,
        "chunks": sum(len(r.arrivals) for r in done),
        "underruns": {
            "chunks": sum(count for count, _ in stalls),
            "streams": sum(1 for count, _ in stalls if count),
            "stall_s": sum(stall for _, stall in stalls),
            "stall_s_max_stream": max((stall for _, stall in stalls), default=0.0),
        },
        "audio_s": audio,
        "audio_s_per_request": {"min": min(r.audio_seconds for r in done), "max": max(r.audio_seconds for r in done)}
        if done else None,
        "wall_s": wall,
        "audio_s_per_wall_s": audio / wall if wall > 0 else None,
        "decode": {
            "steps": steps,
            "request_steps": request_steps,
            "occupancy": request_steps / steps if steps else None,  # mean requests per decode step
            "batch_requests_max": after.get(METRICS[2]),  # since the server started
            # the served LM step (engine histogram), to set against the same step timed alone (step cost)
            "ms_per_step": step_seconds / steps * 1e3 if steps else None,
            "steps_per_wall_s": steps / wall if wall > 0 else None,
        },
    }


async def run_levels(
    grpc_url: str,
    metrics_url: str | None,
    levels: list[int],
    make_requests: Callable[[int, float], list],
    duration: float,
    *,
    stream: StreamFunction,
    engine: str,
    rounds: int = 1,
    min_requests: int = 1,
    warmup: bool = True,
    records: dict[int, list[StreamRecord]] | None = None,
    log=print,
) -> list[dict]:
    """Every level in turn; level N streams `make_requests(max(N * rounds, min_requests), duration)`.
    `records`, when given, receives each level's streams by concurrency."""
    if warmup:  # first requests pay for lazy initialisation in the server; not measured
        await run_level(grpc_url, None, 2, make_requests(2, min(duration, 1.0)), stream=stream, engine=engine)
    results = []
    for concurrency in levels:
        count = max(concurrency * rounds, min_requests)
        log(f"  tritone: {count} streams of {duration:g} s at concurrency {concurrency} ...")
        kept = [] if records is None else records.setdefault(concurrency, [])
        level = await run_level(grpc_url, metrics_url, concurrency, make_requests(count, duration),
                                stream=stream, engine=engine, records=kept)
        ttfa = level["time_to_first_audio_s"]
        log(f"    TTFA p50 {_fmt(ttfa['p50'])} s p95 {_fmt(ttfa['p95'])} s, "
            f"{_fmt(level['audio_s_per_wall_s'])} audio s/s, occupancy {_fmt(level['decode']['occupancy'])}, "
            f"underruns {level['underruns']['chunks']}" + (f", errors {level['errors']}" if level["errors"] else ""))
        results.append(level)
    return results


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3g}"
