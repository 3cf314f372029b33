"""What both families' transformers baselines share: how one-request-at-a-time and statically
batched serving are summarised (each family's own baseline is benchmarks/<name>/baseline.py).

- one request at a time, as a FastAPI wrapper around the model serves: throughput is all audio
  over the sum of service times. Nothing is streamed, so a request's time to first audio is its
  whole latency; with N clients arriving at once and served in turn, client i waits for the i
  requests before it and its own (computed from the measured service times);
- statically batched: one generate() over the N prompts of a level at once; everybody gets audio
  when the whole batch is done.
"""

from __future__ import annotations

from tritone.benchmarks.load import percentiles


def queued_latencies(service_s: list[float], concurrency: int) -> list[float]:
    """Latencies of `concurrency` clients arriving together at a server that runs one at a time."""
    latencies, clock = [], 0.0
    for i in range(concurrency):
        clock += service_s[i % len(service_s)]
        latencies.append(clock)
    return latencies


def sequential_result(service_s: list[float], audio_s: float, levels: list[int], **extra) -> dict:
    """One request at a time: throughput over the sum of service times; per level, the time to
    first audio of N clients arriving together and served in turn (nothing streams: it is the
    whole latency, queued behind the clients before)."""
    return {
        "requests": len(service_s),
        "service_s": service_s,
        "audio_s": audio_s,
        "wall_s": sum(service_s),
        "audio_s_per_wall_s": audio_s / sum(service_s),
        "levels": [
            {"concurrency": n, "time_to_first_audio_s": percentiles(queued_latencies(service_s, n))} for n in levels
        ],
        **extra,
    }


def static_result(concurrency: int, wall: float, audio_s: float, log=print, **extra) -> dict:
    """One batch of `concurrency` requests: everybody gets audio when the whole batch is done."""
    log(f"    {wall:.3g} s, {audio_s / wall:.3g} audio s/s")
    return {
        "concurrency": concurrency,
        "wall_s": wall,
        "audio_s": audio_s,
        "audio_s_per_wall_s": audio_s / wall,
        "time_to_first_audio_s": wall,  # every request gets its audio when the batch is done
        **extra,
    }
