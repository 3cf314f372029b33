"""Timing statistics for one streamed generation."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class StreamStats:
    """Filled in by `stream_music(..., stats=...)`; times are `time.perf_counter()` seconds.

    real_time_factor = wall seconds / audio seconds (lower is better, < 1 is faster
    than real time); x_real_time = audio seconds / wall seconds (its inverse).
    """

    sent_at: float | None = None
    first_audio_at: float | None = None
    finished_at: float | None = None
    chunks: int = 0
    audio_seconds: float = 0.0
    sample_rate: int | None = None
    clock: Callable[[], float] = field(default=time.perf_counter, repr=False)

    def start(self) -> None:
        self.sent_at = self.clock()

    def record(self, samples: int, sample_rate: int) -> None:
        if self.first_audio_at is None:
            self.first_audio_at = self.clock()
        self.chunks += 1
        self.sample_rate = sample_rate
        self.audio_seconds += samples / sample_rate

    def finish(self) -> None:
        self.finished_at = self.clock()

    @property
    def time_to_first_audio(self) -> float | None:
        if self.first_audio_at is None or self.sent_at is None:
            return None
        return self.first_audio_at - self.sent_at

    @property
    def wall_seconds(self) -> float | None:
        if self.finished_at is None or self.sent_at is None:
            return None
        return self.finished_at - self.sent_at

    @property
    def real_time_factor(self) -> float | None:
        wall = self.wall_seconds
        return wall / self.audio_seconds if wall is not None and self.audio_seconds else None

    @property
    def x_real_time(self) -> float | None:
        wall = self.wall_seconds
        return self.audio_seconds / wall if wall else None
