"""The one thread a pipeline's language model lives on: it loads the model, then runs the engine's decode loop.

Why one thread: torch's CPU kernels run on OpenMP (libgomp), and every thread that runs a parallel op
gets a team of worker threads of its own. Once two threads of a process have teams (the model loaded
on the Triton stub's main thread, then stepped on the decode thread), libgomp counts more threads than
cores and stops spinning between parallel regions, so each op of a decode step waits for its workers
to be woken. Measured on 2 cores (MusicGen small-random, one stream with guidance): 64 ms per step
when one thread loads and steps the model, 103-110 ms when another thread loaded it, for bfloat16
and float32 alike (benchmarks/results/decode_thread/). So a pipeline loads its LM with `call`, the
engine runs its loop with `start`, and nothing else in the process runs torch: requests are
validated with numpy, and codecs run as Triton models of their own (in process: ONNX Runtime, whose
thread pool is its own).
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from typing import Callable, TypeVar

log = logging.getLogger(__name__)

R = TypeVar("R")


class DecodeThread:
    def __init__(self, name: str):
        self.name = name
        self._tasks: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def call(self, fn: Callable[..., R], *args, **kwargs) -> R:
        """Run `fn` on the thread; return what it returns, raise what it raises."""
        if threading.current_thread() is self._thread:
            return fn(*args, **kwargs)
        if not self._thread.is_alive():
            raise RuntimeError(f"the {self.name} thread has stopped")
        done: Future = Future()
        self._tasks.put((fn, args, kwargs, done))
        return done.result()

    def start(self, loop: Callable[[], None]) -> None:
        """Run `loop` (the decode loop) on the thread until it returns; returns at once."""
        self._tasks.put((loop, (), {}, None))

    def close(self, timeout: float = 10.0) -> bool:
        """Let the thread end once what it runs returns; True if it ended within `timeout`."""
        self._tasks.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _serve(self) -> None:
        while (task := self._tasks.get()) is not None:
            fn, args, kwargs, done = task
            if done is None:
                try:
                    fn(*args, **kwargs)
                except Exception:
                    log.exception("%s: the loop it ran failed", self.name)
                continue
            try:
                done.set_result(fn(*args, **kwargs))
            except BaseException as error:  # handed to the caller
                done.set_exception(error)


def load_on_decode_thread(thread: DecodeThread | None, name: str, load: Callable[..., R], *args) -> tuple[DecodeThread, R]:
    """(the thread, what `load(*args)` returned there): `thread`, or a new one named `name` that is closed
    again when loading fails."""
    own = thread is None
    thread = thread or DecodeThread(name)
    try:
        return thread, thread.call(load, *args)
    except BaseException:
        if own:
            thread.close()
        raise


def run_on_decode_thread(name: str, fn: Callable[..., R], *args, **kwargs) -> R:
    """`fn(*args, decode_thread=thread, **kwargs)` on a new thread, closed afterwards: for code that loads
    pipelines (passing them `decode_thread`) and steps them itself, as a benchmark does, so that its
    models share one thread as served ones do, and leave no OpenMP team behind."""
    thread = DecodeThread(name)
    try:
        return thread.call(fn, *args, decode_thread=thread, **kwargs)
    finally:
        thread.close()
