"""Changing the speed of streamed speech without changing its pitch (OpenAI's `speed`, 0.25 to 4).

FFmpeg's `atempo` filter (WSOLA: overlapping windows re-spaced in time, so voices keep their
pitch), run through PyAV one chunk at a time: audio leaves the filter while the model is still
generating, never as a whole file at the end. atempo is best within [0.5, 2] (above 2 it skips
input instead of blending it), so other speeds are a chain of factors inside that range:
0.25 = 0.5 x 0.5, 3 = 2 x 1.5. The filter holds back a window of audio (a few tens of
milliseconds) until the next chunk or the end; at the end the output is trimmed or padded with
silence to exactly round(samples / speed).
"""

from __future__ import annotations

import math
from fractions import Fraction

import av
import av.filter
import numpy as np

MIN_SPEED, MAX_SPEED = 0.25, 4.0
_HIGH = 2.0  # the top of atempo's blending range [0.5, 2]


def atempo_factors(speed: float) -> list[float]:
    """Factors in [0.5, 2] whose product is `speed` (none for 1)."""
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise ValueError(f"speed must be in [{MIN_SPEED:g}, {MAX_SPEED:g}], got {speed:g}")
    if speed == 1.0:
        return []
    count = math.ceil(abs(math.log(speed)) / math.log(_HIGH) - 1e-9)
    return [speed ** (1 / count)] * count


class TempoStretch:
    """Feed mono float32 chunks to `process`, then `finish`: the concatenated output is the audio at `speed`."""

    def __init__(self, speed: float, sample_rate: int):
        self.speed, self.sample_rate = speed, int(sample_rate)
        self._factors = atempo_factors(speed)
        self._samples_in = self._samples_out = 0
        self._graph = self._build() if self._factors else None

    def _build(self) -> av.filter.Graph:
        graph = av.filter.Graph()
        node = graph.add_abuffer(sample_rate=self.sample_rate, format="flt", layout="mono",
                                 time_base=Fraction(1, self.sample_rate))
        for factor in self._factors:
            following = graph.add("atempo", f"{factor:.6f}")
            node.link_to(following)
            node = following
        sink = graph.add("abuffersink")
        node.link_to(sink)
        graph.configure()
        return graph

    def process(self, audio: np.ndarray) -> np.ndarray:
        """The stretched audio available so far (possibly empty while the filter fills its window)."""
        audio = np.ascontiguousarray(audio, np.float32).reshape(-1)
        pts, self._samples_in = self._samples_in, self._samples_in + audio.size
        if self._graph is None:
            return self._out(audio)
        if audio.size == 0:
            return np.zeros(0, np.float32)
        frame = av.AudioFrame.from_ndarray(audio[None, :], format="flt", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = self.sample_rate, pts, Fraction(1, self.sample_rate)
        self._graph.push(frame)
        return self._out(self._pull())

    def finish(self) -> np.ndarray:
        """The rest: what the filter held back, trimmed or padded to round(samples in / speed) in total."""
        rest = np.zeros(0, np.float32)
        if self._graph is not None:
            self._graph.push(None)
            rest = self._pull()
        missing = round(self._samples_in / self.speed) - self._samples_out
        rest = rest[:max(0, missing)]
        if rest.size < missing:
            rest = np.concatenate([rest, np.zeros(missing - rest.size, np.float32)])
        return self._out(rest)

    def _pull(self) -> np.ndarray:
        frames = []
        while True:
            try:
                frames.append(self._graph.pull().to_ndarray().reshape(-1))
            except (av.error.BlockingIOError, av.error.EOFError):
                break
        return np.concatenate(frames).astype(np.float32) if frames else np.zeros(0, np.float32)

    def _out(self, audio: np.ndarray) -> np.ndarray:
        self._samples_out += audio.size
        return audio
