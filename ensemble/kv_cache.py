"""The decode batch's self-attention cache: one buffer for every active row, updated in place.

Layout [layers, rows, heads, capacity, head_dim] is exactly what `lm_step.onnx` takes as its
past keys/values, so a step passes the buffer as it is: no per-step gather. Each row attends
only to its own positions (< its position; the graph masks the rest), so rows of requests that
joined at different times share the buffer. Capacity grows in blocks of `BLOCK` steps; rows
are re-packed only when a request joins or leaves (one copy per membership change, not per step).
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

    def prepare(self, slots) -> tuple[np.ndarray, np.ndarray]:
        """Buffers holding every slot's past (positions < slot.step), with room for this step."""
        layout = tuple((slot.serial, slot.rows) for slot in slots)
        need = max(slot.step for slot in slots) + 1
        if layout != self._layout or self.keys is None or self.keys.shape[3] < need:
            limit = max(slot.total_steps for slot in slots)
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
            if old is not None and slot.step > 0:
                keys[:, new, :, : slot.step] = self.keys[:, old, :, : slot.step]
                values[:, new, :, : slot.step] = self.values[:, old, :, : slot.step]
        self.keys, self.values, self._rows, self._layout = keys, values, placed, layout

    def rows(self, slot) -> slice:
        return self._rows[slot.serial]

    def write(self, slot, new_keys: np.ndarray, new_values: np.ndarray) -> None:
        """Store this step's keys/values (new_*: [L, R, H, Dh] for the whole batch) at the slot's position."""
        rows = self._rows[slot.serial]
        self.keys[:, rows, :, slot.step] = new_keys[:, rows]
        self.values[:, rows, :, slot.step] = new_values[:, rows]

    def clear(self) -> None:
        self.keys = self.values = None
        self._rows, self._layout = {}, ()
