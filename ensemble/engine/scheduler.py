"""In-flight batched generation, for any codec-LM family.

One engine thread owns the decode loop. Each iteration it
  1. drops streams whose client went away (their slot is free before the next step),
  2. admits waiting requests into free decode slots (they join the running batch),
  3. plans ONE language-model step for every active row at once, rows at different positions:
     prompts go in chunks under a token budget beside the decoding rows (ensemble/engine/step_plan.py),
  4. has the family run the step, writes the new KV entries, lets each request past its prompt
     sample its next tokens, and hands finished chunks of frames to the emitter.
The emitter thread decodes chunks to audio and sends them, so codec work never stalls the
decode loop, and it is the only thread that talks to a stream: its chunks go out in order and
the final flag is always the last thing a stream sees.

What a step's inputs are and how logits become codes is the family's business (`Family`, in each
family's decoding module); admission, capacity, step planning, the shared KV cache, cancellation,
failure isolation, chunk emission and statistics are the engine's. A family's failure to admit a
request or to consume its logits fails that request only; a failed LM call fails the step's requests.

Capacity is explicit: `max_slots` requests decode at once (each slot holds its KV cache),
`max_queue` more may wait; beyond that `submit` raises `AtCapacity`.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from tritone.ensemble.engine.chunker import ChunkPolicy, Chunker, ChunkWindow
from tritone.ensemble.engine.kv_cache import BatchKVCache
from tritone.ensemble.engine.step_plan import StepBudget, StepPlan, plan_step

log = logging.getLogger(__name__)


class AtCapacity(RuntimeError):
    """Every decode slot is busy and the waiting queue is full."""


class Stream(Protocol):
    """Where one request's results go (a Triton response sender, or a list in tests)."""

    def cancelled(self) -> bool: ...
    def send(self, chunk: "Chunk") -> None: ...
    def fail(self, error: Exception) -> None: ...  # error response + final flag
    def close(self) -> None: ...  # final flag, no data (after a cancellation)


@dataclass
class Chunk:
    index: int
    audio: np.ndarray  # float32 [samples]
    codes: np.ndarray | None  # int64 [K, frames] when requested
    final: bool


@dataclass
class EngineStats:
    steps: int = 0  # language-model steps run
    request_steps: int = 0  # sum over steps of the requests in that step
    max_batch_requests: int = 0  # most requests ever decoded in one step
    prefill_tokens: int = 0  # prompt tokens fed, a chunk per step beside the decoding rows
    admitted: int = 0
    joined_running: int = 0  # admitted while other requests were mid-generation
    completed: int = 0
    cancelled: int = 0
    failed: int = 0
    active: int = 0
    waiting: int = 0


class Slot:
    """One admitted request. Families subclass it with their own decoding state.

    The engine reads: `rows` (batch rows it occupies), `prompt_length` (tokens it prefills in
    chunks before its logits count; 0 when it decodes from its first step), `cached` (KV entries
    written so far; the engine advances it), `capacity` (most KV entries it will ever need),
    `finished`, and `ready` (chunks cut since the last step: (window, codes) pairs, codes
    [K, window frames])."""

    _serials = itertools.count()

    def __init__(self, job, rows: int, capacity: int, chunker: Chunker, return_codes: bool,
                 prompt_length: int = 0):
        self.serial = next(Slot._serials)  # unique for the process's life (id() is reused after free)
        self.job = job
        self.stream: Stream = job.stream
        self.rows = rows
        self.prompt_length = prompt_length
        self.capacity = capacity
        self.cached = 0
        self.chunker = chunker
        self.return_codes = return_codes
        self.finished = False
        self.ready: list[tuple[ChunkWindow, np.ndarray]] = []

    @property
    def started(self) -> bool:
        return self.cached > 0

    @property
    def prefilling(self) -> bool:
        return self.cached < self.prompt_length


class Family(Protocol):
    """A model family's decoding rules (MusicGen: delay pattern + guidance; speech: prompt + grammar).

    Per step the engine calls `forward(plan)` once, writes the new KV entries and advances each
    request's `cached` by what it fed, then calls `consume(slot, logits)` for every request past
    its prompt, with the logits of its rows."""

    name: str
    frame_samples: int  # audio samples per code frame
    kv_layout: tuple[int, int, int]  # layers, KV heads, head dim of the self-attention cache

    def zeros(self, shape: tuple[int, ...]): ...  # a float tensor where the LM runs (numpy or torch)
    def admit(self, job) -> Slot: ...  # per-request setup (may call the LM); raising fails that request only
    def forward(self, plan: StepPlan) -> tuple: ...  # the LM call: logits [R, ...] (numpy), new keys/values
    #   [L, R, H, width, Dh] (row r's first `feed.count` entries are kept)
    def consume(self, slot: Slot, logits: np.ndarray) -> None: ...  # sample, cut chunks; raising fails slot only
    def idle(self) -> None: ...  # nothing active: drop batch-shaped buffers


class Engine:
    def __init__(
        self,
        family: Family,
        decode_codes: Callable[[list[np.ndarray]], list[np.ndarray]],
        *,
        max_slots: int = 8,
        max_queue: int = 32,
        budget: StepBudget = StepBudget(),
        on_step: Callable[[EngineStats], None] | None = None,
    ):
        self.family = family
        self.decode_codes = decode_codes  # [codes [K, T], ...] -> [audio [T * frame_samples], ...]
        self.max_slots = max_slots
        self.max_queue = max_queue
        self.budget = budget
        self.on_step = on_step
        self.stats = EngineStats()
        self.active: list[Slot] = []
        self._waiting: deque = deque()
        self._wake = threading.Condition()
        self._outbox: queue.Queue = queue.Queue()
        self._cache = BatchKVCache(*family.kv_layout, family.zeros)
        self._running = False
        self._threads: list[threading.Thread] = []

    # --- capacity -----------------------------------------------------------------
    def submit(self, job) -> None:
        with self._wake:
            if len(self.active) + len(self._waiting) >= self.max_slots + self.max_queue:
                raise AtCapacity(
                    f"{self.family.name} is at capacity: {len(self.active)} streams generating and "
                    f"{len(self._waiting)} waiting; retry later"
                )
            self._waiting.append(job)
            self.stats.waiting = len(self._waiting)
            self._wake.notify()

    # --- threads ------------------------------------------------------------------
    def start(self) -> None:
        self._running = True
        self._threads = [
            threading.Thread(target=self._decode_loop, name=f"{self.family.name}-decode", daemon=True),
            threading.Thread(target=self._emit_loop, name=f"{self.family.name}-emit", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop the decode loop, let the emitter send what the loop posted, fail whoever is left."""
        with self._wake:
            self._running = False
            self._wake.notify_all()
        decode, emit = self._threads or (None, None)
        if decode is not None:
            decode.join(timeout=10)  # its last step may post chunks: they go out before the emitter stops
        self._outbox.put(None)
        if emit is not None:
            emit.join(timeout=10)
        stopping = RuntimeError(f"{self.family.name} is shutting down (unloaded, or the server is stopping)")
        for slot in self.active:
            slot.stream.fail(stopping)
        for job in self._waiting:
            job.stream.fail(stopping)
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
        """Drop cancelled streams, admit waiting ones, run one step. Used by tests directly."""
        self._drop_cancelled()
        self._admit()
        if self.active:
            try:
                self._step()
            except Exception as error:  # a failed step fails its requests, never the server
                log.exception("%s step failed", self.family.name)
                for slot in self.active:
                    self._post(slot.stream, "fail", error)
                self.stats.failed += len(self.active)
                self.active = []
        self.stats.active = len(self.active)
        if not self.active:  # idle: give the batch buffers back
            self._cache.clear()
            self.family.idle()
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
        for slot in [s for s in self.active if s.stream.cancelled()]:
            self.active.remove(slot)
            self._post(slot.stream, "close")
            self.stats.cancelled += 1

    def _admit(self) -> None:
        while len(self.active) < self.max_slots:
            with self._wake:
                if not self._waiting:
                    break
                job = self._waiting.popleft()
                self.stats.waiting = len(self._waiting)
            try:
                slot = self.family.admit(job)
            except Exception as error:
                log.exception("admission failed")
                self._post(job.stream, "fail", error)
                self.stats.failed += 1
                continue
            if any(s.started for s in self.active):
                self.stats.joined_running += 1
            self.active.append(slot)
            self.stats.admitted += 1

    def _step(self) -> None:
        slots = list(self.active)
        plan = plan_step(slots, self.budget, self._cache)
        logits, new_keys, new_values = self.family.forward(plan)
        self.stats.steps += 1
        self.stats.request_steps += len(slots)
        self.stats.max_batch_requests = max(self.stats.max_batch_requests, len(slots))
        self.stats.prefill_tokens += plan.prefill_tokens
        for feed in plan.feeds:
            slot = feed.slot
            self._cache.write(slot, new_keys, new_values, feed.count)
            slot.cached += feed.count
            if slot.prefilling:  # its logits count once its whole prompt is in
                continue
            try:
                self.family.consume(slot, logits[feed.rows])
            except Exception as error:  # this request's failure, not its neighbours'
                log.exception("%s request failed consuming its logits", self.family.name)
                self.active.remove(slot)
                self._post(slot.stream, "fail", error)
                self.stats.failed += 1
        for slot in slots:
            if slot not in self.active:
                continue
            for window, codes in slot.ready:
                self._post(slot.stream, "chunk", (window, codes, slot.return_codes))
            slot.ready.clear()
            if slot.finished:
                self.active.remove(slot)
                self.stats.completed += 1

    # --- emitter ------------------------------------------------------------------
    def _emit_all(self, items) -> None:
        """Decode every live chunk in one call (the codec decoder batches them), then send in order."""
        live = [i for i, (stream, kind, _) in enumerate(items) if kind == "chunk" and not stream.cancelled()]
        wanted = [i for i in live if items[i][2][1].shape[1] > 0]  # an empty final chunk needs no decoding
        audio = {i: np.zeros(0, np.float32) for i in live}
        decode_error = None
        if wanted:
            try:
                audio.update(zip(wanted, self.decode_codes([items[i][2][1] for i in wanted])))
            except Exception as error:
                log.exception("codec decode failed")
                decode_error = error
        for i, (stream, kind, payload) in enumerate(items):
            try:
                if kind == "close" or (kind == "chunk" and i not in audio and payload[0].final):
                    stream.close()  # a stream cancelled after its last step still gets its one final flag
                elif kind == "fail":
                    stream.fail(payload)
                elif decode_error is not None and i in wanted:
                    stream.fail(decode_error)
                elif i in audio:
                    window, codes, return_codes = payload
                    own = codes[:, window.start - window.window_start : window.end - window.window_start]
                    chunk_audio = window.trim(audio[i], self.family.frame_samples).astype(np.float32)
                    stream.send(Chunk(window.index, chunk_audio, own if return_codes else None, window.final))
            except Exception:
                log.exception("sending a %s to a stream failed", kind)
