"""A seeded request's noise for the flow and the vocoder, addressed by absolute position.

The reference draws its noise inside S3Gen at every call (torch.randn for the flow's starting
point, a uniform phase per overtone and Gaussian noise for HiFT's sine source). Here it comes
from the request's seed, in blocks of one mel frame, each block from its own generator
(numpy's PCG64 seeded with (seed, stream, frame)): any window of frames draws exactly what
the one-shot decode draws at those frames, so a seeded request is reproducible and a streamed
decode sees the noise of its one-shot decode.
"""

from __future__ import annotations

import numpy as np

MEL_BINS = 80
FRAME_SAMPLES = 480
HARMONICS = 9
_FLOW, _PROMPT, _SOURCE, _PHASE = 0, 1, 2, 3  # one stream of generators per use


def _frames(seed: int, stream: int, start: int, frames: int, size: int) -> np.ndarray:
    if seed < 0 or start < 0 or frames < 0:
        raise ValueError(f"seed, start and frames must be >= 0 (got {seed}, {start}, {frames})")
    out = np.empty((frames, size), dtype=np.float32)
    for i in range(frames):
        out[i] = np.random.default_rng((seed, stream, start + i)).standard_normal(size, dtype=np.float32)
    return out


def flow_noise(seed: int, start_frame: int, frames: int) -> np.ndarray:
    """[80, frames] float32: the flow's starting noise at mel frames start_frame .. start_frame + frames."""
    return _frames(seed, _FLOW, start_frame, frames, MEL_BINS).T.copy()


def prompt_noise(seed: int, frames: int) -> np.ndarray:
    """[80, frames] float32: the starting noise of the voice prompt's frames (the same for every window)."""
    return _frames(seed, _PROMPT, 0, frames, MEL_BINS).T.copy()


def source_noise(seed: int, start_frame: int, frames: int) -> np.ndarray:
    """[480 * frames] float32: the vocoder source's noise at the samples of those mel frames."""
    return _frames(seed, _SOURCE, start_frame, frames, FRAME_SAMPLES).reshape(-1)


def source_phase(seed: int) -> np.ndarray:
    """[9] float32 cycles: the overtones' starting phases, uniform in [-1/2, 1/2) (the reference's
    uniform(-pi, pi) radians), the fundamental's 0: a stream's first vocoder window's SOURCE_PHASE."""
    phase = np.random.default_rng((seed, _PHASE)).uniform(-0.5, 0.5, HARMONICS).astype(np.float32)
    phase[0] = 0.0
    return phase
