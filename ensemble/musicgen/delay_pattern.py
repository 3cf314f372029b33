"""MusicGen's codebook delay pattern.

Codebook k runs k steps behind codebook 0, so one decode step emits one token per codebook
and frame f of codebook k is produced at step f + k. For `frames` frames and K codebooks:

    step:        0  1  2  3  4 ...
    codebook 0:  a0 a1 a2 a3 a4
    codebook 1:  P  b0 b1 b2 b3
    codebook 2:  P  P  c0 c1 c2
    codebook 3:  P  P  P  d0 d1      (P: the pad token, forced; as transformers' generate())

Every step feeds the tokens it produced (pads included) back as the next step's input; step 0
is fed the pad (= bos) token on every codebook.
"""

from __future__ import annotations

import numpy as np


def num_steps(frames: int, codebooks: int) -> int:
    """Decode steps needed for `frames` complete frames."""
    return frames + codebooks - 1


def frames_for(duration_s: float, frame_rate: int) -> int:
    return max(1, int(round(duration_s * frame_rate)))


def valid_codebooks(step: int, frames: int, codebooks: int) -> np.ndarray:
    """Bool [K]: which codebooks produce a real token (not a forced pad) at `step`."""
    k = np.arange(codebooks)
    return (step >= k) & (step - k < frames)


def frames_complete(steps_done: int, frames: int, codebooks: int) -> int:
    """Frames whose every codebook is known after `steps_done` steps."""
    return int(min(max(steps_done - (codebooks - 1), 0), frames))
