"""Prompt prefixes' keys and values, kept so that a request starting with the same tokens skips their prefill.

A request may declare a cacheable prefix of its prompt (`Slot.prefix`: token ids its prompt begins
with, the same for every request that shares it: a cloned voice's turn). The engine looks it up at
admission; a hit copies the stored keys/values into the slot's rows of the batch cache and the
step plan prefills only the rest of the prompt. A miss prefills as usual and the engine stores the
prefix's entries once the slot's prefill has passed it.

An entry is keyed by the model's identity (`model_identity`: a digest of the LM's files and how it
runs, so another checkpoint, runtime or dtype never reads another's entries), the rows a request
takes, and the exact token ids (looked up by their digest, then compared whole). Entries live
where the LM runs (numpy on CPU, torch on the device) as [layers, rows, heads, tokens, head_dim]
keys and values; the cache holds at most `max_bytes` of them and drops the least recently used
first. An entry larger than the whole bound is never stored.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class PrefixEntry:
    tokens: np.ndarray  # int64 [n]: the exact prefix
    keys: object  # [L, rows, H, n, Dh], numpy or torch
    values: object
    nbytes: int

    @property
    def length(self) -> int:
        return int(self.tokens.size)


def prefix_key(identity: str, rows: int, tokens: np.ndarray) -> tuple[str, int, str]:
    return identity, rows, hashlib.sha256(np.ascontiguousarray(tokens, np.int64).tobytes()).hexdigest()


class PrefixCache:
    """LRU by bytes. Thread-safe (one engine thread uses it; a shared cache may serve several)."""

    def __init__(self, max_bytes: int):
        if max_bytes < 0:
            raise ValueError(f"prefix_cache_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[tuple, PrefixEntry] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, identity: str, rows: int, tokens: np.ndarray) -> PrefixEntry | None:
        key = prefix_key(identity, rows, tokens)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or not np.array_equal(entry.tokens, tokens):  # a digest collision is a miss
                return None
            self._entries.move_to_end(key)
            return entry

    def fits(self, nbytes: int) -> bool:
        return 0 < nbytes <= self.max_bytes

    def put(self, identity: str, rows: int, tokens: np.ndarray, keys, values) -> bool:
        """Store (keys, values are the cache's own copies); False when one entry would exceed the bound."""
        nbytes = int(keys.nbytes + values.nbytes)
        if not self.fits(nbytes):
            return False
        key = prefix_key(identity, rows, tokens)
        entry = PrefixEntry(np.array(tokens, np.int64), keys, values, nbytes)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= old.nbytes
            while self._entries and self.bytes + nbytes > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self.bytes -= dropped.nbytes
            self._entries[key] = entry
            self.bytes += nbytes
        return True

    def entries(self) -> list[PrefixEntry]:
        """Least recently used first."""
        with self._lock:
            return list(self._entries.values())


def files_digest(paths) -> str:
    """sha256 over the files' names and contents (a directory: every file under it, sorted): a model's identity."""
    digest = hashlib.sha256()
    for path in map(Path, paths):
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file.relative_to(path.parent)).encode() + b"\0")
            with open(file, "rb") as handle:
                while block := handle.read(1 << 22):
                    digest.update(block)
    return digest.hexdigest()
