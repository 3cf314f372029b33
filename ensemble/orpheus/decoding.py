"""Orpheus-format speech's decoding rules for the engine: a prompt prefilled, then one token a step.

A request's prompt (text turn, optionally a cloned voice's turn before it) can be thousands of
tokens. Prefilling it in one call would stall every other stream for that long, so the engine
plans its prompt in chunks, in the same LM call as the single-token decode steps of the other
rows (ensemble/engine/step_plan.py: width = min(prefill_chunk, step_tokens // rows)). This module
builds that [rows, width] step: each row feeds the prompt tokens its plan names, or its last
sampled token, from its own position, and says which of its tokens' logits it wants (its last).

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
from tritone.ensemble.engine.sampling import repetition_penalty, sample
from tritone.ensemble.engine.scheduler import Slot, Stream
from tritone.ensemble.engine.step_plan import StepPlan
from tritone.ensemble.orpheus.format import TOKENS_PER_FRAME
from tritone.ensemble.orpheus.metadata import OrpheusMetadata
from tritone.ensemble.orpheus.request import OrpheusParams


class OrpheusLanguageModel(Protocol):
    """lm_step: ONNX Runtime on CPU, torch on a GPU (cache kept on the device)."""

    def zeros(self, shape: tuple[int, ...]): ...
    def step(self, input_ids, positions, logit_index, past_keys, past_values): ...  # logits numpy [R, V]


@dataclass(eq=False)
class OrpheusJob:
    params: OrpheusParams
    prompt: np.ndarray  # int64 [tokens]: the whole prompt, cloned voice's turn included
    frame_limit: int  # max_duration, or where the LM's context ends
    stream: Stream
    submitted: float = field(default_factory=time.monotonic)


class OrpheusSlot(Slot):
    def __init__(self, job: OrpheusJob, model: OrpheusMetadata, policy: ChunkPolicy):
        params = job.params
        self.prompt = job.prompt
        self.frame_limit = job.frame_limit
        prefix = self.prompt[: model.format.voice_prefix_length(self.prompt)]  # a cloned voice's turn: cacheable
        super().__init__(job, 1, len(self.prompt) + TOKENS_PER_FRAME * self.frame_limit,
                         Chunker(policy, self.frame_limit), params.return_codes, prompt_length=len(self.prompt),
                         prefix=prefix)
        self.codes = np.zeros((TOKENS_PER_FRAME, self.frame_limit), np.int64)
        self.generated = 0  # answer tokens sampled (end_of_speech excluded)
        self.last = -1  # the token to feed next once the prompt is in
        self.seen = np.zeros(model.vocab_size, bool)  # for the repetition penalty
        self.seen[self.prompt] = True
        self.rng = np.random.default_rng(params.seed)


class OrpheusFamily:
    name = "orpheus"

    def __init__(self, lm: OrpheusLanguageModel, model: OrpheusMetadata, policy: ChunkPolicy):
        self.lm = lm
        self.model = model
        self.format = model.format
        self.policy = policy
        self.frame_samples = model.frame_samples
        self.kv_layout = (model.num_layers, model.num_kv_heads, model.head_dim)
        # the grammar's candidates for each position in a frame, built once
        self._candidates = [self.format.allowed(position) for position in range(TOKENS_PER_FRAME)]

    def zeros(self, shape):
        return self.lm.zeros(shape)

    def admit(self, job: OrpheusJob) -> OrpheusSlot:
        return OrpheusSlot(job, self.model, self.policy)

    def idle(self) -> None:
        pass

    def forward(self, plan: StepPlan):
        """One row per request: prompt tokens [start, end) while it prefills, else its last token."""
        input_ids = np.full((plan.batch_rows, plan.width), self.format.pad_token_id, np.int64)
        positions = np.empty(plan.batch_rows, np.int64)
        logit_index = np.empty(plan.batch_rows, np.int64)
        for feed in plan.feeds:
            row = feed.rows.start
            input_ids[row, : feed.count] = feed.slot.prompt[feed.start : feed.end] if feed.prefill else feed.slot.last
            positions[row] = feed.start
            logit_index[row] = feed.count - 1
        return self.lm.step(input_ids, positions, logit_index, plan.past_keys, plan.past_values)

    def consume(self, slot: OrpheusSlot, logits: np.ndarray) -> None:
        """logits: [1, V], the row's last fed token's: they choose the next answer token."""
        params = slot.job.params
        candidates = self._candidates[slot.generated % TOKENS_PER_FRAME]
        scores = repetition_penalty(logits[0, candidates], slot.seen[candidates], params.repetition_penalty)
        token = int(candidates[sample(scores[None], params.temperature, params.top_k, params.top_p, slot.rng)[0]])
        slot.tokens_out += 1
        if token == self.format.end_of_speech:
            slot.chunker.finish(slot.generated // TOKENS_PER_FRAME)
            slot.finished = True
        else:
            position, frame = slot.generated % TOKENS_PER_FRAME, slot.generated // TOKENS_PER_FRAME
            slot.codes[position, frame] = token - self.format.audio_start - position * self.format.codebook_size
            slot.generated += 1
            slot.seen[token] = True
            slot.last = token
            if slot.generated == TOKENS_PER_FRAME * slot.frame_limit:
                slot.finished = True
        complete = slot.generated // TOKENS_PER_FRAME
        while (window := slot.chunker.next_chunk(complete)) is not None:
            slot.ready.append((window, slot.codes[:, window.window_start : window.window_end].copy()))
