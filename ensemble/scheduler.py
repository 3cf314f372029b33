"""In-flight batched MusicGen generation.

One engine thread owns the decode loop. Each iteration it
  1. drops streams whose client went away (their slot is free before the next step),
  2. admits waiting requests into free decode slots (they join the running batch),
  3. runs ONE decode step for every active row at once, rows at different positions,
  4. samples each request's tokens (guidance, temperature, top-k/top-p, its own seeded RNG),
     applies the delay pattern, and hands finished chunks of frames to the emitter.
The emitter thread decodes chunks to audio and sends them, so codec work never stalls the
decode loop, and it is the only thread that talks to a stream: its chunks go out in order and
the final flag is always the last thing a stream sees.

Capacity is explicit: `max_slots` requests decode at once (each slot holds its KV cache,
`slot_bytes()`), `max_queue` more may wait; beyond that `submit` raises `AtCapacity`.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from ensemble.chunker import ChunkPolicy, Chunker
from ensemble.delay_pattern import frames_complete, frames_for, num_steps, valid_codebooks
from ensemble.kv_cache import BatchKVCache
from ensemble.musicgen_model import MusicgenModel
from ensemble.musicgen_request import GenerationParams
from ensemble.sampling import apply_guidance, sample

log = logging.getLogger(__name__)


class AtCapacity(RuntimeError):
    """Every decode slot is busy and the waiting queue is full."""


class Stream(Protocol):
    """Where one request's results go (a Triton response sender, or a list in tests)."""

    def cancelled(self) -> bool: ...
    def send(self, chunk: "Chunk") -> None: ...
    def fail(self, error: Exception) -> None: ...  # error response + final flag
    def close(self) -> None: ...  # final flag, no data (after a cancellation)


class LanguageModel(Protocol):
    """The decoder: ONNX Runtime on CPU, or torch on a GPU with its tensors kept on the device.

    Keys/values live wherever `zeros` allocates them; logits come back as numpy for sampling."""

    def zeros(self, shape: tuple[int, ...]): ...  # float32 tensor of the runtime's kind
    def cross_kv(self, hidden: np.ndarray) -> tuple: ...
    def step(self, code_ids, positions, past_keys, past_values, cross_keys, cross_values, encoder_mask): ...


@dataclass
class Chunk:
    index: int
    audio: np.ndarray  # float32 [samples]
    codes: np.ndarray | None  # int64 [K, frames] when requested
    final: bool


@dataclass(eq=False)  # identity: jobs hold arrays, and two equal requests are still two jobs
class Job:
    """A validated, text-encoded request waiting for a decode slot."""

    params: GenerationParams
    encoder_hidden: np.ndarray  # [E, D] conditional row
    encoder_mask: np.ndarray  # [E] int64
    stream: Stream
    submitted: float = field(default_factory=time.monotonic)


@dataclass
class EngineStats:
    steps: int = 0  # decode steps run
    request_steps: int = 0  # sum over steps of the requests in that step
    max_batch_requests: int = 0  # most requests ever decoded in one step
    admitted: int = 0
    joined_running: int = 0  # admitted while other requests were mid-generation
    completed: int = 0
    cancelled: int = 0
    failed: int = 0
    active: int = 0
    waiting: int = 0


class Slot:
    """One admitted request: its KV cache, codes so far, RNG and chunk cursor."""

    _serials = itertools.count()

    def __init__(self, job: Job, model: MusicgenModel, policy: ChunkPolicy, cross_keys, cross_values):
        params = job.params
        self.serial = next(Slot._serials)  # unique for the process's life (id() is reused after free)
        self.job = job
        self.rows = params.rows
        self.prompt = params.prompt_codes  # [K, P] teacher-forced before sampling starts, or None
        self.frames = params.prompt_frames + frames_for(params.duration, model.frame_rate)
        self.total_steps = num_steps(self.frames, model.num_codebooks)
        self.cross_keys, self.cross_values = cross_keys, cross_values  # [L, rows, H, E, Dh]
        self.encoder_mask = np.zeros((self.rows, job.encoder_mask.shape[0]), np.int64)
        self.encoder_mask[0] = job.encoder_mask  # the unconditional row attends to nothing
        self.step = 0
        self.tokens = np.full(model.num_codebooks, model.pad_token_id, np.int64)  # next input
        self.codes = np.zeros((model.num_codebooks, self.frames), np.int64)
        if self.prompt is not None:
            self.codes[:, : self.prompt.shape[1]] = self.prompt
        self.rng = np.random.default_rng(params.seed)
        self.chunker = Chunker(policy, self.frames, start=params.prompt_frames)

    @property
    def finished(self) -> bool:
        return self.step >= self.total_steps


class Engine:
    def __init__(
        self,
        lm: LanguageModel,
        decode_codes: Callable[[list[np.ndarray]], list[np.ndarray]],
        model: MusicgenModel,
        *,
        max_slots: int = 8,
        max_queue: int = 32,
        policy: ChunkPolicy = ChunkPolicy(),
        on_step: Callable[[EngineStats], None] | None = None,
    ):
        self.lm = lm
        self.decode_codes = decode_codes  # [codes [K, T], ...] -> [audio [T * hop], ...]
        self.model = model
        self.max_slots = max_slots
        self.max_queue = max_queue
        self.policy = policy
        self.on_step = on_step
        self.stats = EngineStats()
        self.active: list[Slot] = []
        self._waiting: deque[Job] = deque()
        self._wake = threading.Condition()
        self._outbox: queue.Queue = queue.Queue()
        self._cross_batch = None  # (slot serials, keys, values, mask), rebuilt when membership changes
        self._cache = BatchKVCache(model.num_layers, model.num_heads, model.head_dim, lm.zeros)
        self._running = False
        self._threads: list[threading.Thread] = []

    # --- capacity -----------------------------------------------------------------
    def slot_bytes(self, duration_s: float, rows: int = 2) -> int:
        steps = num_steps(frames_for(duration_s, self.model.frame_rate), self.model.num_codebooks)
        return self.model.kv_bytes_per_step(rows) * steps

    def submit(self, job: Job) -> None:
        with self._wake:
            if len(self.active) + len(self._waiting) >= self.max_slots + self.max_queue:
                raise AtCapacity(
                    f"musicgen is at capacity: {len(self.active)} streams generating and "
                    f"{len(self._waiting)} waiting; retry later"
                )
            self._waiting.append(job)
            self.stats.waiting = len(self._waiting)
            self._wake.notify()

    # --- threads ------------------------------------------------------------------
    def start(self) -> None:
        self._running = True
        self._threads = [
            threading.Thread(target=self._decode_loop, name="musicgen-decode", daemon=True),
            threading.Thread(target=self._emit_loop, name="musicgen-emit", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        with self._wake:
            self._running = False
            self._wake.notify_all()
        self._outbox.put(None)
        for thread in self._threads:
            thread.join(timeout=10)
        for slot in self.active:
            slot.job.stream.fail(RuntimeError("the server is shutting down"))
        for job in self._waiting:
            job.stream.fail(RuntimeError("the server is shutting down"))
        self.active.clear()
        self._waiting.clear()

    def _decode_loop(self) -> None:
        while True:
            with self._wake:
                while self._running and not self.active and not self._waiting:
                    self._wake.wait()
                if not self._running:
                    return
            self.run_once()

    def _emit_loop(self) -> None:
        while (item := self._outbox.get()) is not None:
            items = [item]
            while not self._outbox.empty():  # everything queued meanwhile is decoded in one batch
                items.append(self._outbox.get())
            stop = items[-1] is None
            self._emit_all([i for i in items if i is not None])
            if stop:
                return

    # --- one iteration --------------------------------------------------------------
    def run_once(self, emit_inline: bool = False) -> None:
        """Drop cancelled streams, admit waiting ones, run one decode step. Used by tests directly."""
        self._drop_cancelled()
        self._admit()
        if self.active:
            try:
                self._step()
            except Exception as error:  # a failed step fails its requests, never the server
                log.exception("decode step failed")
                for slot in self.active:
                    self._post(slot.job.stream, "fail", error)
                self.stats.failed += len(self.active)
                self.active = []
        self.stats.active = len(self.active)
        if not self.active:  # idle: give the batch buffers back
            self._cache.clear()
            self._cross_batch = None
        if self.on_step is not None:
            try:
                self.on_step(self.stats)
            except Exception:
                log.exception("on_step hook failed")
        if emit_inline:
            items = []
            while not self._outbox.empty():
                items.append(self._outbox.get())
            self._emit_all(items)

    def _post(self, stream: Stream, kind: str, payload=None) -> None:
        self._outbox.put((stream, kind, payload))

    def _drop_cancelled(self) -> None:
        with self._wake:
            kept = deque()
            for job in self._waiting:
                if job.stream.cancelled():
                    self._post(job.stream, "close")
                    self.stats.cancelled += 1
                else:
                    kept.append(job)
            self._waiting = kept
            self.stats.waiting = len(kept)
        for slot in [s for s in self.active if s.job.stream.cancelled()]:
            self.active.remove(slot)
            self._post(slot.job.stream, "close")
            self.stats.cancelled += 1

    def _admit(self) -> None:
        while len(self.active) < self.max_slots:
            with self._wake:
                if not self._waiting:
                    break
                job = self._waiting.popleft()
                self.stats.waiting = len(self._waiting)
            try:
                hidden = job.encoder_hidden[None]
                if job.params.rows == 2:
                    hidden = np.concatenate([hidden, np.zeros_like(hidden)])
                cross_keys, cross_values = self.lm.cross_kv(hidden.astype(np.float32))
                slot = Slot(job, self.model, self.policy, cross_keys, cross_values)
            except Exception as error:
                log.exception("admission failed")
                self._post(job.stream, "fail", error)
                self.stats.failed += 1
                continue
            if any(s.step > 0 for s in self.active):
                self.stats.joined_running += 1
            self.active.append(slot)
            self.stats.admitted += 1

    def _cross_inputs(self):
        key = tuple(slot.serial for slot in self.active)
        if self._cross_batch is None or self._cross_batch[0] != key:
            tokens = max(slot.encoder_mask.shape[1] for slot in self.active)
            rows = sum(slot.rows for slot in self.active)
            layers, _, heads, _, head_dim = self.active[0].cross_keys.shape
            keys = self.lm.zeros((layers, rows, heads, tokens, head_dim))
            values = self.lm.zeros((layers, rows, heads, tokens, head_dim))
            mask = np.zeros((rows, tokens), np.int64)
            row = 0
            for slot in self.active:
                width = slot.encoder_mask.shape[1]
                keys[:, row : row + slot.rows, :, :width] = slot.cross_keys
                values[:, row : row + slot.rows, :, :width] = slot.cross_values
                mask[row : row + slot.rows, :width] = slot.encoder_mask
                row += slot.rows
            self._cross_batch = (key, keys, values, mask)
        return self._cross_batch[1:]

    def _step(self) -> None:
        slots = self.active
        model = self.model
        rows = sum(slot.rows for slot in slots)
        past_keys, past_values = self._cache.prepare(slots)  # [L, R, H, T, Dh], in place
        code_ids = np.empty((rows, model.num_codebooks), np.int64)
        positions = np.empty(rows, np.int64)
        for slot in slots:
            rs = self._cache.rows(slot)
            code_ids[rs] = slot.tokens
            positions[rs] = slot.step
        cross_keys, cross_values, encoder_mask = self._cross_inputs()

        logits, new_keys, new_values = self.lm.step(
            code_ids, positions, past_keys, past_values, cross_keys, cross_values, encoder_mask
        )  # logits [R, K, V]; new_* [L, R, H, Dh]

        for slot in slots:
            self._cache.write(slot, new_keys, new_values)
            self._advance(slot, logits[self._cache.rows(slot)])

        self.stats.steps += 1
        self.stats.request_steps += len(slots)
        self.stats.max_batch_requests = max(self.stats.max_batch_requests, len(slots))
        finished = [slot for slot in slots if slot.finished]
        for slot in finished:
            self.active.remove(slot)
            self.stats.completed += 1

    def _advance(self, slot: Slot, logits: np.ndarray) -> None:
        params = slot.job.params
        guided = apply_guidance(logits, params.guidance_scale)  # [K, V]
        tokens = sample(guided, params.temperature, params.top_k, params.top_p, slot.rng)
        valid = valid_codebooks(slot.step, slot.frames, self.model.num_codebooks)
        for k in np.flatnonzero(valid):
            frame = slot.step - k
            if frame < params.prompt_frames:
                tokens[k] = slot.prompt[k, frame]  # teacher-forced: the continuation's context
            else:
                slot.codes[k, frame] = tokens[k]
        slot.tokens = np.where(valid, tokens, self.model.pad_token_id).astype(np.int64)
        slot.step += 1
        complete = frames_complete(slot.step, slot.frames, self.model.num_codebooks)
        while (window := slot.chunker.next_chunk(complete)) is not None:  # the last step can finish two
            codes = slot.codes[:, window.window_start : window.window_end].copy()
            self._post(slot.job.stream, "chunk", (window, codes, params.return_codes))

    # --- emitter ------------------------------------------------------------------
    def _emit_all(self, items) -> None:
        """Decode every live chunk in one call (the codec decoder batches them), then send in order."""
        wanted = [i for i, (stream, kind, _) in enumerate(items) if kind == "chunk" and not stream.cancelled()]
        audio, decode_error = {}, None
        if wanted:
            try:
                decoded = self.decode_codes([items[i][2][1] for i in wanted])
                audio = dict(zip(wanted, decoded))
            except Exception as error:
                log.exception("codec decode failed")
                decode_error = error
        for i, (stream, kind, payload) in enumerate(items):
            try:
                if kind == "close":
                    stream.close()
                elif kind == "fail":
                    stream.fail(payload)
                elif i in audio:
                    window, codes, return_codes = payload
                    own = codes[:, window.start - window.window_start : window.end - window.window_start]
                    chunk_audio = window.trim(audio[i], self.model.hop_length).astype(np.float32)
                    stream.send(Chunk(window.index, chunk_audio, own if return_codes else None, window.final))
                elif decode_error is not None and i in wanted:
                    stream.fail(decode_error)
            except Exception:
                log.exception("sending a %s to a stream failed", kind)
