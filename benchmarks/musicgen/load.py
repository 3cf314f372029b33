"""music's workload for the streaming load generator (benchmarks/load.py): the prompts, MusicGen's
sampling, and `musicgen` streamed with `client.stream_music`.

The random checkpoints' tokenizers were trained on PROMPTS; a real checkpoint's tokenizer takes
them as they are. Request i uses PROMPTS[i % len(PROMPTS)], seed SEED + i.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from tritone.benchmarks.load import SEED, run_levels
from tritone.client import MusicRequest, stream_music
from tritone.ensemble import tensors as T
from tritone.export.musicgen.tiny import PROMPTS


@dataclass(frozen=True)
class Sampling:
    """MusicGen's defaults, for both systems: sampling, top-k 250, classifier-free guidance 3."""

    temperature: float = 1.0
    top_k: int = 250
    guidance_scale: float = 3.0

    def top_k_for(self, codebook_size: int) -> int:
        return min(self.top_k, codebook_size)  # as transformers' TopKLogitsWarper clamps it


def workload(count: int) -> list[tuple[str, int]]:
    """(prompt, seed) of requests 0..count-1: the same for tritone and the baselines."""
    return [(PROMPTS[i % len(PROMPTS)], SEED + i) for i in range(count)]


def requests_for(count: int, duration: float, sampling: Sampling, codebook_size: int) -> list[MusicRequest]:
    return [
        MusicRequest(text, duration, temperature=sampling.temperature, top_k=sampling.top_k_for(codebook_size),
                     guidance_scale=sampling.guidance_scale, seed=seed)
        for text, seed in workload(count)
    ]


def stream(url: str, request: MusicRequest, timeout: float) -> AsyncIterator:
    return stream_music(url, request, timeout=timeout)


async def run_load(
    grpc_url: str,
    metrics_url: str | None,
    levels: list[int],
    duration: float,
    codebook_size: int,
    *,
    sampling: Sampling = Sampling(),
    rounds: int = 1,
    min_requests: int = 1,
    warmup: bool = True,
    log=print,
) -> list[dict]:
    """Every level in turn; level N streams max(N * rounds, min_requests) requests."""
    return await run_levels(
        grpc_url, metrics_url, levels, lambda count, seconds: requests_for(count, seconds, sampling, codebook_size),
        duration, stream=stream, engine=T.MUSICGEN, rounds=rounds, min_requests=min_requests, warmup=warmup, log=log)
