"""MusicGen's decoding rules for the engine: guidance rows, the delay pattern, cross-attention.

Each request takes one row, or two under classifier-free guidance (conditional and
unconditional). A step feeds every row one token per codebook at its own position; the
delay pattern (codebook k lags k frames) decides which tokens are real, and a continuation's
prompt frames are teacher-forced before sampling takes over.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from tritone.ensemble.engine.chunker import ChunkPolicy, Chunker
from tritone.ensemble.musicgen.delay_pattern import frames_complete, frames_for, num_steps, valid_codebooks
from tritone.ensemble.engine.sampling import sample
from tritone.ensemble.engine.scheduler import Slot, Stream
from tritone.ensemble.engine.step_plan import StepPlan
from tritone.ensemble.musicgen.guidance import apply_guidance
from tritone.ensemble.musicgen.metadata import MusicgenMetadata
from tritone.ensemble.musicgen.request import GenerationParams


class LanguageModel(Protocol):
    """The decoder: ONNX Runtime on CPU, or torch on a GPU with its tensors kept on the device.

    Keys/values live wherever `zeros` allocates them; logits come back as numpy for sampling."""

    def zeros(self, shape: tuple[int, ...]): ...  # float32 tensor of the runtime's kind
    def cross_kv(self, hidden: np.ndarray) -> tuple: ...
    def step(self, code_ids, positions, past_keys, past_values, cross_keys, cross_values, encoder_mask): ...


@dataclass(eq=False)  # identity: jobs hold arrays, and two equal requests are still two jobs
class Job:
    """A validated, text-encoded request waiting for a decode slot."""

    params: GenerationParams
    encoder_hidden: np.ndarray  # [E, D] conditional row
    encoder_mask: np.ndarray  # [E] int64
    stream: Stream
    submitted: float = field(default_factory=time.monotonic)


class MusicgenSlot(Slot):
    """Codes so far, the next input tokens, cross-attention K/V, the RNG."""

    def __init__(self, job: Job, model: MusicgenMetadata, policy: ChunkPolicy, cross_keys, cross_values):
        params = job.params
        self.prompt = params.prompt_codes  # [K, P] teacher-forced before sampling starts, or None
        self.frames = params.prompt_frames + frames_for(params.duration, model.frame_rate)
        self.total_steps = num_steps(self.frames, model.num_codebooks)
        chunker = Chunker(policy, self.frames, start=params.prompt_frames)
        super().__init__(job, params.rows, self.total_steps, chunker, params.return_codes)
        self.cross_keys, self.cross_values = cross_keys, cross_values  # [L, rows, H, E, Dh]
        self.encoder_mask = np.zeros((self.rows, job.encoder_mask.shape[0]), np.int64)
        self.encoder_mask[0] = job.encoder_mask  # the unconditional row attends to nothing
        self.tokens_in = int(job.encoder_mask.sum())  # the prompt's text tokens (codes are not sampled)
        self.tokens = np.full(model.num_codebooks, model.pad_token_id, np.int64)  # next input
        self.codes = np.zeros((model.num_codebooks, self.frames), np.int64)
        if self.prompt is not None:
            self.codes[:, : self.prompt.shape[1]] = self.prompt
        self.rng = np.random.default_rng(params.seed)

    @property
    def step(self) -> int:  # one token per codebook per step: the step count is the cache length
        return self.cached


class MusicgenFamily:
    name = "musicgen"

    def __init__(self, lm: LanguageModel, model: MusicgenMetadata, policy: ChunkPolicy = ChunkPolicy()):
        self.lm = lm
        self.model = model
        self.policy = policy
        self.frame_samples = model.hop_length
        self.kv_layout = (model.num_layers, model.num_heads, model.head_dim)
        self._cross_batch = None  # (slot serials, keys, values, mask), rebuilt when membership changes

    def zeros(self, shape):
        return self.lm.zeros(shape)

    def slot_bytes(self, duration_s: float, rows: int = 2) -> int:
        steps = num_steps(frames_for(duration_s, self.model.frame_rate), self.model.num_codebooks)
        return self.model.kv_bytes_per_step(rows) * steps

    def admit(self, job: Job) -> MusicgenSlot:
        hidden = job.encoder_hidden[None]
        if job.params.rows == 2:
            hidden = np.concatenate([hidden, np.zeros_like(hidden)])
        cross_keys, cross_values = self.lm.cross_kv(hidden.astype(np.float32))
        return MusicgenSlot(job, self.model, self.policy, cross_keys, cross_values)

    def idle(self) -> None:
        self._cross_batch = None

    def _cross_inputs(self, slots):
        key = tuple(slot.serial for slot in slots)
        if self._cross_batch is None or self._cross_batch[0] != key:
            tokens = max(slot.encoder_mask.shape[1] for slot in slots)
            rows = sum(slot.rows for slot in slots)
            layers, _, heads, _, head_dim = slots[0].cross_keys.shape
            keys = self.lm.zeros((layers, rows, heads, tokens, head_dim))
            values = self.lm.zeros((layers, rows, heads, tokens, head_dim))
            mask = np.zeros((rows, tokens), np.int64)
            row = 0
            for slot in slots:
                width = slot.encoder_mask.shape[1]
                keys[:, row : row + slot.rows, :, :width] = slot.cross_keys
                values[:, row : row + slot.rows, :, :width] = slot.cross_values
                mask[row : row + slot.rows, :width] = slot.encoder_mask
                row += slot.rows
            self._cross_batch = (key, keys, values, mask)
        return self._cross_batch[1:]

    def forward(self, plan: StepPlan):
        """Every row feeds one token per codebook (nothing prefills: prompt codes are teacher-forced
        step by step, the delay pattern staggering them)."""
        code_ids = np.empty((plan.batch_rows, self.model.num_codebooks), np.int64)
        positions = np.empty(plan.batch_rows, np.int64)
        for feed in plan.feeds:
            code_ids[feed.rows] = feed.slot.tokens
            positions[feed.rows] = feed.start
        cross_keys, cross_values, encoder_mask = self._cross_inputs([feed.slot for feed in plan.feeds])

        logits, new_keys, new_values = self.lm.step(
            code_ids, positions, plan.past_keys, plan.past_values, cross_keys, cross_values, encoder_mask
        )  # logits [R, K, V]; new_* [L, R, H, Dh]
        return logits, new_keys[:, :, :, None], new_values[:, :, :, None]

    def consume(self, slot: MusicgenSlot, logits: np.ndarray) -> None:
        """logits: [rows, K, V] of the step at position slot.step - 1 (the engine advanced it)."""
        params = slot.job.params
        step = slot.step - 1
        guided = apply_guidance(logits, params.guidance_scale)  # [K, V]
        tokens = sample(guided, params.temperature, params.top_k, params.top_p, slot.rng)
        valid = valid_codebooks(step, slot.frames, self.model.num_codebooks)
        for k in np.flatnonzero(valid):
            frame = step - k
            if frame < params.prompt_frames:
                tokens[k] = slot.prompt[k, frame]  # teacher-forced: the continuation's context
            else:
                slot.codes[k, frame] = tokens[k]
                slot.tokens_out += 1
        slot.tokens = np.where(valid, tokens, self.model.pad_token_id).astype(np.int64)
        slot.finished = slot.step >= slot.total_steps
        complete = frames_complete(slot.step, slot.frames, self.model.num_codebooks)
        while (window := slot.chunker.next_chunk(complete)) is not None:  # the last step can finish two
            slot.ready.append((window, slot.codes[:, window.window_start : window.window_end].copy()))
