"""When to cut generated frames into audio chunks, and which codes to decode for each.

Chunks start small (first audio fast) and grow (fewer decoder calls, less overhead):
sizes are first_frames * growth**i, capped at max_chunk_frames. The codec decoder is not causal
(non-causal convolutions and an LSTM), so a chunk decoded alone would click at its edges.
Each chunk is therefore decoded inside a window that adds up to `left_context` frames before
it and `lookahead` frames after it, and only the chunk's own samples are kept. The lookahead
delays a chunk by `lookahead` frames; the left context costs decoder time, not latency.
Concatenated chunks have exactly frames * hop samples.

A busy batch steps more slowly, so each frame of the first chunk costs a waiting listener more:
while a stream waits for its first chunk and `busy_streams` or more streams are decoding, its first
chunk is `busy_first_frames` long (0: never shortened); later chunks keep their sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class ChunkPolicy:
    first_frames: int = 10  # 0.2 s at 50 Hz: the time-to-first-audio knob
    growth: float = 2.0
    max_chunk_frames: int = 100  # 2 s: caps decoder work per chunk
    left_context: int = 25  # frames of history decoded with each chunk (seam quality)
    lookahead: int = 5  # frames of future decoded with each chunk (seam quality, adds latency)
    min_window: int = 5  # the codec decoder's shortest input; short windows reach further back
    busy_first_frames: int = 0  # the first chunk while the batch is busy (0: first_frames always)
    busy_streams: int = 8  # streams decoding from which the batch is busy

    def __post_init__(self):
        if self.first_frames < 1 or self.max_chunk_frames < self.first_frames or self.growth < 1.0:
            raise ValueError(f"invalid chunk policy {self}")
        if self.left_context < 0 or self.lookahead < 0 or self.min_window < 1:
            raise ValueError(f"invalid chunk policy {self}")
        if not 0 <= self.busy_first_frames <= self.first_frames or self.busy_streams < 1:
            raise ValueError(f"invalid chunk policy {self}: busy_first_frames must be in [0, first_frames] "
                             "and busy_streams at least 1")

    def size(self, index: int, streams: int = 1) -> int:
        """Chunk `index`'s frames when `streams` streams are decoding."""
        if index == 0 and self.busy_first_frames and streams >= self.busy_streams:
            return self.busy_first_frames
        return int(min(self.max_chunk_frames, self.first_frames * self.growth**index))

    def parameters(self) -> dict[str, str]:
        """Every knob as a Triton config parameter (a family's spec renders its policy with them)."""
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class ChunkWindow:
    index: int
    start: int  # first frame of the chunk
    end: int  # one past its last frame
    window_start: int  # frames [window_start, window_end) are decoded
    window_end: int
    final: bool

    def trim(self, audio, hop: int):
        """Keep the chunk's own samples out of the decoded window's audio."""
        offset = (self.start - self.window_start) * hop
        return audio[offset : offset + (self.end - self.start) * hop]


class Chunker:
    """Per-stream cursor: call `next_chunk(frames_complete)` after each decode step.

    `start` > 0 skips frames that are not to be emitted (a continuation's prompt); they still
    serve as left context of the first chunk, so it joins the earlier audio without a seam.
    `total_frames` is the most the stream can have; a stream that ends earlier (speech reaching
    its end token) calls `finish(frames)`, and the rest comes out with the final flag. A stream
    that ends exactly on a chunk boundary, or with no frames at all, gets an empty final chunk."""

    def __init__(self, policy: ChunkPolicy, total_frames: int, start: int = 0):
        self.policy = policy
        self.total = total_frames
        self.emitted = start
        self.index = 0
        self.done = False  # the final chunk has been cut
        self.streams = 1  # streams decoding in the latest step (the engine sets it): a busy batch cuts sooner

    def finish(self, frames: int) -> None:
        self.total = min(self.total, frames)

    def next_chunk(self, frames_complete: int) -> ChunkWindow | None:
        if self.done:
            return None
        if self.emitted >= self.total:
            if frames_complete < self.total:
                return None
            self.done = True
            return ChunkWindow(self.index, self.emitted, self.emitted, self.emitted, self.emitted, final=True)
        end = min(self.emitted + self.policy.size(self.index, self.streams), self.total)
        window_end = min(end + self.policy.lookahead, self.total)
        if frames_complete < window_end:
            return None
        chunk = ChunkWindow(
            index=self.index,
            start=self.emitted,
            end=end,
            window_start=max(0, min(self.emitted - self.policy.left_context, window_end - self.policy.min_window)),
            window_end=window_end,
            final=end == self.total,
        )
        self.emitted = end
        self.index += 1
        self.done = chunk.final
        return chunk
