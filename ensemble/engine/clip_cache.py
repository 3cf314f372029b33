"""What a reference clip becomes (its codes, a voice's conditioning), computed once per clip content.

A client that sends the same voice clip with every sentence pays the encoder once: results are kept
by the clip's content hash, least recently used first out. Any family's pipeline uses it."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Callable, Generic, TypeVar

import numpy as np

Result = TypeVar("Result")


class ClipCache(Generic[Result]):
    """clip (float32 samples) -> encode(clip), by content hash; at most `capacity` kept."""

    def __init__(self, encode: Callable[[np.ndarray], Result], capacity: int):
        self._encode = encode
        self._capacity = capacity
        self._results: OrderedDict[str, Result] = OrderedDict()
        self._lock = threading.Lock()
        self.encoded = 0  # encoder calls made (a hit makes none)

    def get(self, clip: np.ndarray) -> Result:
        clip = np.ascontiguousarray(clip, np.float32)
        key = hashlib.sha256(clip.tobytes()).hexdigest()
        with self._lock:
            if key in self._results:
                self._results.move_to_end(key)
                return self._results[key]
        result = self._encode(clip)
        with self._lock:
            self.encoded += 1
            self._results[key] = result
            while len(self._results) > self._capacity:
                self._results.popitem(last=False)
        return result
