"""Orpheus-format speech's decoding rules for the engine: chunked prefill, then one token a step.

A request's prompt (text turn, optionally a cloned voice's turn before it) can be thousands of
tokens. Prefilling it in one call would stall every other stream for that long, so prompts go in
chunks, in the same LM call as the single-token decode steps of the other rows: the step is
[rows, width], width 1 when nobody prefills; each row has its own position and says which of its
tokens' logits it wants. Decode rows advance at every step and never wait more than one step.

While someone prefills, every row is padded to the width, so a step computes rows x width
tokens. `step_tokens` bounds that: width = min(prefill_chunk, step_tokens // rows), at least 1.
Where decoding is memory-bound (a GPU) padding is nearly free and the budget is large; on a CPU,
compute-bound, a small budget keeps a prefill step within a few decode steps' time, at the cost
of more (cheaper) steps for the prompt.

Sampling applies, in transformers' order: the Orpheus grammar (ensemble/orpheus_format.py),
the repetition penalty over every token of the row so far (prompt included), then temperature,
top-k, top-p. The grammar leaves one frame position's 4096 codes (and end_of_speech at a frame
boundary) out of a 156940-token vocabulary, so the rest of sampling works on those candidates
only: the same choice as masking the whole vocabulary to -inf, at a fortieth of the work per token.
Every 7 answer tokens make a frame; end_of_speech (or max_duration) ends the stream.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from tritone.ensemble.engine.chunker import ChunkPolicy, Chunker
from tritone.ensemble.engine.kv_cache import BatchKVCache
from tritone.ensemble.orpheus.format import TOKENS_PER_FRAME
from tritone.ensemble.engine.sampling import sample
from tritone.ensemble.engine.scheduler import EngineStats, Slot, Stream
from tritone.ensemble.orpheus.metadata import SpeechModel
from tritone.ensemble.orpheus.request import SpeechParams


class SpeechLanguageModel(Protocol):
    """speech_lm_step: ONNX Runtime on CPU, torch on a GPU (cache kept on the device)."""

    def zeros(self, shape: tuple[int, ...]): ...
    def step(self, input_ids, positions, logit_index, past_keys, past_values): ...  # logits numpy [R, V]


@dataclass(eq=False)
class SpeechJob:
    params: SpeechParams
    prompt: np.ndarray  # int64 [tokens]: the whole prompt, cloned voice's turn included
    max_frames: int  # max_duration, or where the LM's context ends
    stream: Stream
    submitted: float = field(default_factory=time.monotonic)


class SpeechSlot(Slot):
    def __init__(self, job: SpeechJob, model: SpeechModel, policy: ChunkPolicy):
        params = job.params
        self.prompt = job.prompt
        self.max_frames = job.max_frames
        super().__init__(job, 1, len(self.prompt) + TOKENS_PER_FRAME * self.max_frames,
                         Chunker(policy, self.max_frames), params.return_codes)
        self.codes = np.zeros((TOKENS_PER_FRAME, self.max_frames), np.int64)
        self.generated = 0  # answer tokens sampled (end_of_speech excluded)
        self.last = -1  # the token to feed next once the prompt is in
        self.seen = np.zeros(model.vocab_size, bool)  # for the repetition penalty
        self.seen[self.prompt] = True
        self.rng = np.random.default_rng(params.seed)

    @property
    def prefilling(self) -> bool:
        return self.cached < len(self.prompt)


class SpeechFamily:
    name = "orpheus"

    def __init__(self, lm: SpeechLanguageModel, model: SpeechModel, policy: ChunkPolicy, prefill_chunk: int = 32,
                 step_tokens: int = 4096):
        if prefill_chunk < 1 or step_tokens < 1:
            raise ValueError(f"prefill_chunk and step_tokens must be >= 1, got {prefill_chunk} and {step_tokens}")
        self.lm = lm
        self.model = model
        self.format = model.format
        self.policy = policy
        self.prefill_chunk = prefill_chunk
        self.step_tokens = step_tokens
        self.frame_samples = model.frame_samples
        self.kv_layout = (model.num_layers, model.num_kv_heads, model.head_dim)
        # the grammar's candidates for each position in a frame, built once
        self._candidates = [self.format.allowed(position) for position in range(TOKENS_PER_FRAME)]

    def zeros(self, shape):
        return self.lm.zeros(shape)

    def admit(self, job: SpeechJob) -> SpeechSlot:
        return SpeechSlot(job, self.model, self.policy)

    def idle(self) -> None:
        pass

    def step(self, slots: list[SpeechSlot], cache: BatchKVCache, stats: EngineStats) -> None:
        prefilling = [slot for slot in slots if slot.prefilling]
        width = 1
        if prefilling:
            chunk = min(self.prefill_chunk, max(1, self.step_tokens // len(slots)))
            width = min(chunk, max(len(s.prompt) - s.cached for s in prefilling))
        past_keys, past_values = cache.prepare(slots, width)
        rows = [cache.rows(slot).start for slot in slots]  # one row per request
        input_ids = np.full((len(slots), width), self.format.pad_token_id, np.int64)
        positions = np.empty(len(slots), np.int64)
        logit_index = np.empty(len(slots), np.int64)
        fed = []
        for slot, row in zip(slots, rows):
            if slot.prefilling:
                tokens = slot.prompt[slot.cached : slot.cached + width]
                stats.prefill_tokens += len(tokens)
            else:
                tokens = [slot.last]
            input_ids[row, : len(tokens)] = tokens
            positions[row] = slot.cached
            logit_index[row] = len(tokens) - 1
            fed.append(len(tokens))

        logits, new_keys, new_values = self.lm.step(input_ids, positions, logit_index, past_keys, past_values)

        for slot, row, count in zip(slots, rows, fed):
            cache.write(slot, new_keys, new_values, count)
            slot.cached += count
            if not slot.prefilling:  # the prompt is in: these logits choose the next answer token
                self._advance(slot, logits[row])

    def _advance(self, slot: SpeechSlot, logits: np.ndarray) -> None:
        params = slot.job.params
        candidates = self._candidates[slot.generated % TOKENS_PER_FRAME]
        scores = logits[candidates]
        if params.repetition_penalty != 1.0:
            penalty = params.repetition_penalty
            scores = np.where(slot.seen[candidates], np.where(scores < 0, scores * penalty, scores / penalty), scores)
        token = int(candidates[sample(scores[None], params.temperature, params.top_k, params.top_p, slot.rng)[0]])
        if token == self.format.end_of_speech:
            slot.chunker.finish(slot.generated // TOKENS_PER_FRAME)
            slot.finished = True
        else:
            position, frame = slot.generated % TOKENS_PER_FRAME, slot.generated // TOKENS_PER_FRAME
            slot.codes[position, frame] = token - self.format.audio_start - position * self.format.codebook_size
            slot.generated += 1
            slot.seen[token] = True
            slot.last = token
            if slot.generated == TOKENS_PER_FRAME * slot.max_frames:
                slot.finished = True
        complete = slot.generated // TOKENS_PER_FRAME
        while (window := slot.chunker.next_chunk(complete)) is not None:
            slot.ready.append((window, slot.codes[:, window.window_start : window.window_end].copy()))
