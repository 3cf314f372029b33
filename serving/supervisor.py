"""Keep tritonserver and the gateway running under `python -m tritone.serving`, and stop both on a signal.

Each is a child process watched every half second. One that exits unexpectedly is started again
after a backoff (1 s, doubling up to 30 s, back to 1 s once it has run for a minute), with a log
line, while the other keeps running: the gateway answers 503 while Triton is away and reconnects
by itself. A stop (Ctrl-C, SIGTERM) drains from the front: the gateway refuses new requests and
gives its running streams the drain time, then tritonserver stops (its exit timeout is the drain
time too); whatever is left of a process group after that is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from tritone.serving.triton import TritonServer

STABLE_S = 60.0  # a child that ran this long gets the shortest backoff again


def log(message: str) -> None:
    print(f"[serving] {message}", flush=True)


@dataclass
class Backoff:
    initial: float = 1.0
    maximum: float = 30.0
    delay: float = field(init=False)

    def __post_init__(self) -> None:
        self.delay = self.initial

    def next(self, ran_for: float) -> float:
        """The wait before a restart, after a child that ran `ran_for` seconds."""
        if ran_for >= STABLE_S:
            self.delay = self.initial
        delay, self.delay = self.delay, min(self.delay * 2, self.maximum)
        return delay


class Child:
    """One supervised process: how to start it, whether it runs, how to stop it."""

    def __init__(self, name: str, start: Callable[[], None], running: Callable[[], bool],
                 stop: Callable[[float], int | None], exit_code: Callable[[], int | None]):
        self.name, self._start, self.running, self.stop, self.exit_code = name, start, running, stop, exit_code
        self.started_at = 0.0
        self.restarts = 0
        self.backoff = Backoff()
        self.restart_at: float | None = None

    def start(self) -> None:
        self._start()
        self.started_at = time.monotonic()
        self.restart_at = None

    def check(self, now: float) -> None:
        """Start again when due; schedule a restart when it has exited."""
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.restarts += 1
                log(f"restarting {self.name} (restart {self.restarts})")
                self.start()
            return
        if not self.running():
            ran_for = now - self.started_at
            delay = self.backoff.next(ran_for)
            log(f"{self.name} exited with code {self.exit_code()} after {ran_for:.1f} s; restarting in {delay:g} s")
            self.stop(0)  # reap it and clean what it left (process group, shared memory)
            self.restart_at = now + delay


def triton_child(server: TritonServer, start: Callable[[], None]) -> Child:
    def exit_code() -> int | None:
        process = server._process
        return None if process is None else process.poll()

    def running() -> bool:
        server.note_shared_memory()
        return server.is_running()

    return Child("tritonserver", start, running, lambda timeout: server.stop(timeout=timeout), exit_code)


class GatewayProcess:
    """`python -m tritone.gateway` in its own process group, pointed at the server."""

    def __init__(self, host: str, port: int, server: TritonServer, drain_s: float):
        self.host, self.port, self.server, self.drain_s = host, port, server, drain_s
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ,
               "TRITONE_HOST": self.host,
               "TRITONE_PORT": str(self.port),
               "TRITONE_DRAIN_S": str(self.drain_s),
               "TRITONE_TRITON_GRPC_URL": self.server.grpc_url,
               "TRITONE_TRITON_HTTP_URL": f"http://{self.server.http_url}",
               "TRITONE_TRITON_METRICS_URL": self.server.metrics_url}
        self.process = subprocess.Popen([sys.executable, "-m", "tritone.gateway"], env=env, start_new_session=True)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self, timeout: float) -> int | None:
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.terminate()  # uvicorn: stop accepting, let open responses end, then exit
            try:
                return process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return process.wait()

    def child(self) -> Child:
        return Child("gateway", self.start, self.running, self.stop, self.exit_code)


def supervise(children: list[Child], stop: threading.Event, drain_s: float) -> None:
    """Watch until `stop` is set, then stop the children front door first, each within `drain_s` (+ a kill).

    `children` are in start order (tritonserver, then the gateway): the gateway stops first, refusing
    new requests while its running streams end (Triton still serves them), then tritonserver."""
    while not stop.wait(0.5):
        now = time.monotonic()
        for child in children:
            child.check(now)
    log(f"stopping ({', '.join(child.name for child in reversed(children))}); "
        f"running streams get {drain_s:g} s")
    started = time.monotonic()
    for child in reversed(children):
        child.stop(drain_s + 2)
    log(f"stopped in {time.monotonic() - started:.1f} s")
