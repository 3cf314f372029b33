"""The decode batch's self-attention cache: one buffer for every active row, updated in place.

Layout [layers, rows, heads, capacity, head_dim] is exactly what the step graphs take as their
past keys/values, so a step passes the buffer as it is: no per-step gather. Each row attends
only to its own entries (< its position; the graph masks the rest), so rows of requests that
joined at different times share the buffer. Capacity grows in blocks of `BLOCK` entries; rows
are re-packed only when a request joins or leaves (one copy per membership change, not per step).

A slot exposes `serial`, `rows`, `cached` (entries written) and `capacity` (most it will need).
A slot admitted with a cached prompt prefix (ensemble/engine/prefix_cache.py) starts with `cached`
entries already known: `restore` hands them over, and the repack that places its rows copies them in.
"""

from __future__ import annotations

from typing import Callable

BLOCK = 64


class BatchKVCache:
    def __init__(self, layers: int, heads: int, head_dim: int, zeros: Callable):
        self.layers, self.heads, self.head_dim = layers, heads, head_dim
        self._zeros = zeros  # numpy on CPU, torch on a GPU: the cache stays where the model runs
        self.keys = self.values = None  # [L, R, H, T, Dh]
        self._rows: dict[int, slice] = {}  # slot serial -> its rows in the buffer
        self._layout: tuple = ()
        self._restore: dict[int, tuple] = {}  # slot serial -> (keys, values) [L, rows, H, n, Dh] to place

    def restore(self, slot, keys, values) -> None:
        """A slot not yet placed starts with these entries (its first `slot.cached`), copied in when it is."""
        self._restore[slot.serial] = (keys, values)

    def prepare(self, slots, width: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Buffers holding every slot's past (entries < slot.cached), with room for `width` more."""
        layout = tuple((slot.serial, slot.rows) for slot in slots)
        need = max(slot.cached for slot in slots) + width
        if layout != self._layout or self.keys is None or self.keys.shape[3] < need:
            limit = max(max(slot.capacity for slot in slots), need)
            capacity = min(-(-need // BLOCK) * BLOCK, limit)
            self._repack(slots, layout, capacity)
        return self.keys, self.values

    def _repack(self, slots, layout, capacity: int) -> None:
        rows = sum(slot.rows for slot in slots)
        shape = (self.layers, rows, self.heads, capacity, self.head_dim)
        keys, values = self._zeros(shape), self._zeros(shape)
        placed, row = {}, 0
        for slot in slots:
            placed[slot.serial] = new = slice(row, row + slot.rows)
            row += slot.rows
            old = self._rows.get(slot.serial)
            if old is not None and slot.cached > 0:
                keys[:, new, :, : slot.cached] = self.keys[:, old, :, : slot.cached]
                values[:, new, :, : slot.cached] = self.values[:, old, :, : slot.cached]
            elif slot.serial in self._restore:
                restored_keys, restored_values = self._restore[slot.serial]
                keys[:, new, :, : slot.cached] = restored_keys[:, :, :, : slot.cached]
                values[:, new, :, : slot.cached] = restored_values[:, :, :, : slot.cached]
        self.keys, self.values, self._rows, self._layout = keys, values, placed, layout
        self._restore.clear()  # placed now, or their slots left before their first step

    def copy(self, slot, count: int) -> tuple:
        """A copy of the slot's first `count` entries: keys, values [L, rows, H, count, Dh]."""
        rows = self._rows[slot.serial]
        shape = (self.layers, slot.rows, self.heads, count, self.head_dim)
        keys, values = self._zeros(shape), self._zeros(shape)
        keys[...] = self.keys[:, rows, :, :count]
        values[...] = self.values[:, rows, :, :count]
        return keys, values

    def rows(self, slot) -> slice:
        return self._rows[slot.serial]

    def write(self, slot, new_keys, new_values, count: int = 1) -> None:
        """Store the slot's first `count` new entries (new_*: [L, R, H, W, Dh] for the whole batch)
        at entries slot.cached .. slot.cached + count - 1. The caller then advances slot.cached."""
        rows = self._rows[slot.serial]
        at = slice(slot.cached, slot.cached + count)
        self.keys[:, rows, :, at] = new_keys[:, rows, :, :count]
        self.values[:, rows, :, at] = new_values[:, rows, :, :count]

    def clear(self) -> None:
        self.keys = self.values = None
        self._rows, self._layout, self._restore = {}, (), {}
