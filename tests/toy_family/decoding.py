"""The toy family's decoding rules for the engine (ensemble/engine/scheduler.py `Family`), and its codec.

The LM is deterministic numpy: the next token is `next_token(history)` of everything the row was fed,
read back from the engine's KV cache (its keys are the tokens themselves), so a stream's codes are
known in advance and a planning or cache mistake shows as a wrong code."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tritone.ensemble.engine.chunker import ChunkPolicy, Chunker
from tritone.ensemble.engine.scheduler import Slot, Stream

from tests.toy_family.spec import CODEBOOKS, FRAME_SAMPLES, PIPELINE_NAME, VOCAB


def next_token(history) -> int:
    return (7 * int(sum(history)) + len(history)) % VOCAB


def decode_frames(codes: np.ndarray) -> np.ndarray:
    """The toy codec: codes [1, frames] -> audio [frames * FRAME_SAMPLES], frame f the constant codes[0, f] / VOCAB."""
    return np.repeat(codes[0].astype(np.float32) / np.float32(VOCAB), FRAME_SAMPLES)


@dataclass(eq=False)
class ToyJob:
    prompt: np.ndarray  # int64 token ids
    frames: int
    return_codes: bool
    stream: Stream


class ToySlot(Slot):
    def __init__(self, job: ToyJob, policy: ChunkPolicy):
        super().__init__(job, 1, len(job.prompt) + job.frames, Chunker(policy, job.frames), job.return_codes,
                         prompt_length=len(job.prompt))
        self.codes = np.zeros((CODEBOOKS, job.frames), np.int64)
        self.generated = 0


class ToyFamily:
    name = PIPELINE_NAME
    frame_samples = FRAME_SAMPLES
    kv_layout = (1, 1, 1)  # layers, heads, head dim: one entry per token, the token

    def __init__(self, policy: ChunkPolicy):
        self.policy = policy

    def zeros(self, shape):
        return np.zeros(shape, np.float32)

    def admit(self, job: ToyJob) -> ToySlot:
        return ToySlot(job, self.policy)

    def idle(self) -> None:
        pass

    def forward(self, plan):
        rows = plan.batch_rows
        input_ids = np.zeros((rows, plan.width), np.int64)
        logits = np.zeros((rows, VOCAB), np.float32)
        for feed in plan.feeds:
            slot = feed.slot
            last = slot.codes[0, slot.generated - 1 : slot.generated]  # decoding: the code sampled last
            fed = slot.job.prompt[feed.start : feed.end] if feed.prefill else last
            input_ids[feed.rows, : feed.count] = fed
            history = [*plan.past_keys[0, feed.rows, 0, : feed.start, 0].reshape(-1), *fed]
            logits[feed.rows, next_token(history)] = 1.0
        new = input_ids.astype(np.float32)[None, :, None, :, None]  # [1, rows, 1, width, 1]
        return logits, new, new.copy()

    def consume(self, slot: ToySlot, logits: np.ndarray) -> None:
        slot.codes[0, slot.generated] = int(np.argmax(logits[0]))
        slot.generated += 1
        slot.finished = slot.generated == slot.job.frames
        while (window := slot.chunker.next_chunk(slot.generated)) is not None:
            slot.ready.append((window, slot.codes[:, window.window_start : window.window_end].copy()))
