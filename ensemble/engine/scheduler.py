"""In-flight batched generation, for any codec-LM family.

One engine thread owns the decode loop (the pipeline's DecodeThread, which loaded the LM: see
ensemble/engine/decode_thread.py for why). Each iteration it
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

A request whose prompt begins with a declared prefix (`Slot.prefix`: a cloned voice's turn) reuses
that prefix's keys/values when the prefix cache holds them (ensemble/engine/prefix_cache.py): a hit
starts the slot past the prefix and only the rest is prefilled. A miss prefills it and stores it once
past it; a request admitted while another is still prefilling the same prefix waits for that one's
entry (it takes its slot but no rows in the steps meanwhile) rather than prefilling it a second time.
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
from tritone.ensemble.engine.decode_thread import DecodeThread
from tritone.ensemble.engine.kv_cache import BatchKVCache
from tritone.ensemble.engine.prefix_cache import PrefixCache, prefix_key
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
    usage: tuple[int, int] | None = None  # on the final chunk: (LM input tokens, LM tokens sampled)


@dataclass
class EngineStats:
    steps: int = 0  # language-model steps run
    request_steps: int = 0  # sum over steps of the requests in that step
    max_batch_requests: int = 0  # most requests ever decoded in one step
    prefill_tokens: int = 0  # prompt tokens fed, a chunk per step beside the decoding rows
    admitted: int = 0
    joined_running: int = 0  # admitted while other requests were mid-generation
    last_step_s: float = 0.0  # wall time of the latest step (LM call, KV writes, sampling)
    completed: int = 0
    cancelled: int = 0
    failed: int = 0
    active: int = 0
    waiting: int = 0
    prefix_hits: int = 0  # requests that started past their prefix with cached keys/values
    prefix_misses: int = 0  # requests with a cacheable prefix that prefilled it
    prefix_tokens_saved: int = 0  # prompt tokens not prefilled thanks to hits
    prefix_cache_bytes: int = 0  # keys/values held by the prefix cache


class Slot:
    """One admitted request. Families subclass it with their own decoding state.

    The engine reads: `rows` (batch rows it occupies), `prompt_length` (tokens it prefills in
    chunks before its logits count; 0 when it decodes from its first step), `cached` (KV entries
    written so far; the engine advances it), `capacity` (most KV entries it will ever need),
    `finished`, and `ready` (chunks cut since the last step: (window, codes) pairs, codes
    [K, window frames]). `prefix`: token ids its prompt begins with whose keys/values may be shared
    with other requests (empty: none); only the first `prompt_length - 1` of them can be skipped,
    since the prompt's last token gives the first logits. `tokens_in` (the LM's input tokens: the
    prompt, unless the family says otherwise) and `tokens_out` (tokens it sampled, counted by the
    family's `consume`) are the request's usage, sent with its final chunk. `codec_inputs(window)`:
    what the codec decoder needs beside a window's codes (a voice's conditioning, the noise of a
    seeded request at that window's position); nothing for a codec that reads codes alone."""

    _serials = itertools.count()

    def __init__(self, job, rows: int, capacity: int, chunker: Chunker, return_codes: bool,
                 prompt_length: int = 0, prefix=None):
        self.serial = next(Slot._serials)  # unique for the process's life (id() is reused after free)
        self.job = job
        self.stream: Stream = job.stream
        self.rows = rows
        self.prompt_length = prompt_length
        self.tokens_in = prompt_length
        self.tokens_out = 0
        self.capacity = capacity
        self.cached = 0
        self.chunker = chunker
        self.return_codes = return_codes
        self.finished = False
        self.ready: list[tuple[ChunkWindow, np.ndarray]] = []
        self.prefix = np.zeros(0, np.int64) if prefix is None else np.asarray(prefix, np.int64)
        if self.prefix.size > prompt_length:
            raise ValueError(f"a prefix of {self.prefix.size} tokens is longer than the {prompt_length}-token prompt")
        self.prefix_store: tuple | None = None  # its prefix's cache key while it is to store it once prefilled
        self.prefix_wait: tuple | None = None  # that key while it waits for another slot's prefill of it

    def codec_inputs(self, window: ChunkWindow) -> tuple[np.ndarray, ...]:
        return ()

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
        decode_codes: Callable[[list[tuple[np.ndarray, ...]]], list[np.ndarray]],
        *,
        max_slots: int = 8,
        max_queue: int = 32,
        budget: StepBudget = StepBudget(),
        on_step: Callable[[EngineStats], None] | None = None,
        prefix_cache: PrefixCache | None = None,
        model_identity: str = "",
        decode_thread: DecodeThread | None = None,
    ):
        self.family = family
        self.decode_thread = decode_thread  # the thread that loaded the family's LM (one of its own when None)
        # [(codes [K, T], *slot.codec_inputs(window)), ...] -> [audio [T * frame_samples], ...]
        self.decode_codes = decode_codes
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
        if prefix_cache is not None and prefix_cache.max_bytes > 0 and not model_identity:
            raise ValueError("a prefix cache needs the model's identity (so other models never read its entries)")
        self.prefix_cache = prefix_cache if prefix_cache is not None and prefix_cache.max_bytes > 0 else None
        self.model_identity = model_identity
        if self.prefix_cache is not None:  # keys + values of one token, one row, where the LM runs
            self._entry_bytes_per_token = 2 * int(np.prod(family.kv_layout)) * int(family.zeros((1,)).nbytes)
        self._running = False
        self._emitter: threading.Thread | None = None

    @classmethod
    def for_pipeline(cls, family: Family, decode_codes, settings, *, on_step=None,
                     decode_thread: DecodeThread | None = None) -> "Engine":
        """The engine a pipeline's settings describe: max_slots, max_queue, and where they exist prefill_chunk and
        step_tokens (the step budget) and prefix_cache_bytes (a prefix cache keyed by the family LM's identity)."""
        budget = StepBudget(*(getattr(settings, name) for name in ("prefill_chunk", "step_tokens"))) \
            if hasattr(settings, "step_tokens") else StepBudget()
        prefix_bytes = getattr(settings, "prefix_cache_bytes", 0)
        prefixes = PrefixCache(prefix_bytes) if prefix_bytes else None
        identity = family.lm.identity() if prefixes is not None else ""  # a digest of the LM's files
        return cls(family, decode_codes, max_slots=settings.max_slots, max_queue=settings.max_queue, budget=budget,
                   on_step=on_step, prefix_cache=prefixes, model_identity=identity, decode_thread=decode_thread)

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
        if self.decode_thread is None:
            self.decode_thread = DecodeThread(f"{self.family.name}-decode")
        self.decode_thread.start(self._decode_loop)
        self._emitter = threading.Thread(target=self._emit_loop, name=f"{self.family.name}-emit", daemon=True)
        self._emitter.start()

    def stop(self) -> None:
        """Stop the decode loop (its thread ends), let the emitter send what the loop posted, fail whoever is left."""
        with self._wake:
            self._running = False
            self._wake.notify_all()
        if self.decode_thread is not None:
            self.decode_thread.close(timeout=10)  # its last step may post chunks: they go out before the emitter stops
        self._outbox.put(None)
        if self._emitter is not None:
            self._emitter.join(timeout=10)
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
            started = time.perf_counter()
            try:
                self._step()
                self.stats.last_step_s = time.perf_counter() - started
            except Exception as error:  # a failed step fails its requests, never the server
                log.exception("%s step failed", self.family.name)
                for slot in self.active:
                    self._post(slot.stream, "fail", error)
                self.stats.failed += len(self.active)
                self.active = []
        self.stats.active = len(self.active)
        if self.prefix_cache is not None:
            self.stats.prefix_cache_bytes = self.prefix_cache.bytes
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

    def _log(self, level: int, stream: Stream, message: str, *args, exc_info: bool = False) -> None:
        """A line about one request, tagged with its id (the gRPC request id: the gateway's X-Request-Id)."""
        log.log(level, "%s " + message, self.family.name, *args, exc_info=exc_info,
                extra={"request_id": getattr(stream, "request_id", "") or "-"})

    def _drop_cancelled(self) -> None:
        with self._wake:
            kept = deque()
            for job in self._waiting:
                if job.stream.cancelled():
                    self._post(job.stream, "close")
                    self.stats.cancelled += 1
                    self._log(logging.INFO, job.stream, "request cancelled while waiting")
                else:
                    kept.append(job)
            self._waiting = kept
            self.stats.waiting = len(kept)
        for slot in [s for s in self.active if s.stream.cancelled()]:
            self.active.remove(slot)
            self._post(slot.stream, "close")
            self.stats.cancelled += 1
            self._log(logging.INFO, slot.stream, "request cancelled after %d tokens; its slot is free",
                      slot.tokens_out)

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
                self._log(logging.ERROR, job.stream, "admission failed", exc_info=True)
                self._post(job.stream, "fail", error)
                self.stats.failed += 1
                continue
            if any(s.started for s in self.active):
                self.stats.joined_running += 1
            if slot.prefix.size and self.prefix_cache is not None:
                self._find_prefix(slot)
            self.active.append(slot)
            self.stats.admitted += 1
            self._log(logging.INFO, slot.stream, "request admitted: %d prompt tokens, %d active, %d waiting",
                      slot.prompt_length, len(self.active), self.stats.waiting)

    # --- prefix cache ---------------------------------------------------------------
    def _find_prefix(self, slot: Slot) -> None:
        """At admission: start past the prefix (hit), wait for a slot prefilling it now, or prefill and store it."""
        usable = min(slot.prefix.size, slot.prompt_length - 1)
        if usable < 1 or not self.prefix_cache.fits(self._entry_bytes_per_token * slot.rows * slot.prefix.size):
            return
        if self._restore_prefix(slot):
            return
        key = prefix_key(self.model_identity, slot.rows, slot.prefix)
        if any(other.prefix_store == key for other in self.active):
            slot.prefix_wait = key
        else:
            self._prefill_prefix(slot, key)

    def _restore_prefix(self, slot: Slot) -> bool:
        entry = self.prefix_cache.get(self.model_identity, slot.rows, slot.prefix)
        if entry is None:
            return False
        slot.cached = min(entry.length, slot.prompt_length - 1)
        self._cache.restore(slot, entry.keys, entry.values)
        slot.prefix_wait = None
        self.stats.prefix_hits += 1
        self.stats.prefix_tokens_saved += slot.cached
        return True

    def _prefill_prefix(self, slot: Slot, key: tuple) -> None:
        slot.prefix_wait, slot.prefix_store = None, key
        self.stats.prefix_misses += 1

    def _resolve_waiting(self) -> None:
        """A waiting slot takes the entry once stored; if no slot is prefilling its prefix any more
        (the one that was left or failed), it prefills the prefix itself."""
        for slot in self.active:
            if slot.prefix_wait is None or self._restore_prefix(slot):
                continue
            if not any(other.prefix_store == slot.prefix_wait for other in self.active):
                self._prefill_prefix(slot, slot.prefix_wait)

    def _store_prefix(self, slot: Slot) -> None:
        keys, values = self._cache.copy(slot, slot.prefix.size)
        self.prefix_cache.put(self.model_identity, slot.rows, slot.prefix, keys, values)
        slot.prefix_store = None

    def _step(self) -> None:
        if self.prefix_cache is not None:
            self._resolve_waiting()
        slots = [slot for slot in self.active if slot.prefix_wait is None]
        plan = plan_step(slots, self.budget, self._cache)
        logits, new_keys, new_values = self.family.forward(plan)
        self.stats.steps += 1
        self.stats.request_steps += len(slots)
        self.stats.max_batch_requests = max(self.stats.max_batch_requests, len(slots))
        self.stats.prefill_tokens += plan.prefill_tokens
        for feed in plan.feeds:
            slot = feed.slot
            slot.chunker.streams = len(slots)
            self._cache.write(slot, new_keys, new_values, feed.count)
            slot.cached += feed.count
            if slot.prefix_store is not None and slot.cached >= slot.prefix.size:
                self._store_prefix(slot)
            if slot.prefilling:  # its logits count once its whole prompt is in
                continue
            try:
                self.family.consume(slot, logits[feed.rows])
            except Exception as error:  # this request's failure, not its neighbours'
                self._log(logging.ERROR, slot.stream, "request failed consuming its logits", exc_info=True)
                self.active.remove(slot)
                self._post(slot.stream, "fail", error)
                self.stats.failed += 1
        for slot in slots:
            if slot not in self.active:
                continue
            for window, codes in slot.ready:
                usage = (slot.tokens_in, slot.tokens_out) if window.final else None
                self._post(slot.stream, "chunk", (window, (codes, *slot.codec_inputs(window)), slot.return_codes, usage))
            slot.ready.clear()
            if slot.finished:
                self.active.remove(slot)
                self.stats.completed += 1
                self._log(logging.INFO, slot.stream, "request completed: %d input tokens, %d sampled",
                          slot.tokens_in, slot.tokens_out)

    # --- emitter ------------------------------------------------------------------
    def _emit_all(self, items) -> None:
        """Send what the decode loop queued: streams' first chunks first, decoded in a call of their own ahead
        of a backlog of later chunks (time to first audio does not wait for running streams' audio), then the
        rest; each stream's items keep their order."""
        first = [item for item in items if item[1] == "chunk" and item[2][0].index == 0]
        if first and len(first) < len(items):
            self._emit_batch(first)
            self._emit_batch([item for item in items if not (item[1] == "chunk" and item[2][0].index == 0)])
        else:
            self._emit_batch(items)

    def _emit_batch(self, items) -> None:
        """Decode every live chunk in one call (the codec decoder batches them), then send in order."""
        live = [i for i, (stream, kind, _) in enumerate(items) if kind == "chunk" and not stream.cancelled()]
        wanted = [i for i in live if items[i][2][1][0].shape[1] > 0]  # an empty final chunk needs no decoding
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
                    window, (codes, *_), return_codes, usage = payload
                    own = codes[:, window.start - window.window_start : window.end - window.window_start]
                    chunk_audio = window.trim(audio[i], self.family.frame_samples).astype(np.float32)
                    stream.send(Chunk(window.index, chunk_audio, own if return_codes else None, window.final, usage))
            except Exception:
                log.exception("sending a %s to a stream failed", kind)
