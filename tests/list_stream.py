"""A Stream that records what the engine does to it: the engine driven without Triton."""

import numpy as np


class ListStream:
    """A Stream that records everything the engine does to it, in order."""

    def __init__(self, cancel_after_chunks: int | None = None):
        self.events: list[tuple] = []
        self.cancel = False
        self.cancel_after_chunks = cancel_after_chunks

    @property
    def chunks(self):
        return [payload for kind, payload in self.events if kind == "chunk"]

    @property
    def ended(self) -> bool:
        return any(kind in ("close", "fail") or (kind == "chunk" and payload.final) for kind, payload in self.events)

    def codes(self) -> np.ndarray:
        return np.concatenate([chunk.codes for chunk in self.chunks], axis=1)

    def cancelled(self) -> bool:
        return self.cancel

    def send(self, chunk) -> None:
        self.events.append(("chunk", chunk))
        if self.cancel_after_chunks is not None and len(self.chunks) >= self.cancel_after_chunks:
            self.cancel = True

    def fail(self, error) -> None:
        self.events.append(("fail", error))

    def close(self) -> None:
        self.events.append(("close", None))

    @property
    def failed(self) -> bool:
        return any(kind == "fail" for kind, _ in self.events)


def run_until_ended(pipeline, *streams, limit: int = 500) -> None:
    """Drive the pipeline's engine step by step (emitting inline) until every stream has ended."""
    for _ in range(limit):
        if all(stream.ended for stream in streams):
            return
        pipeline.engine.run_once(emit_inline=True)
    raise AssertionError(f"streams did not end within {limit} engine iterations")
