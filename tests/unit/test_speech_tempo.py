"""gateway.tempo: OpenAI's `speed` as a streaming, pitch-preserving time stretch (FFmpeg's atempo)."""

import math

import numpy as np
import pytest

from tritone.gateway.tempo import TempoStretch, atempo_factors

SR = 24000


def tone(seconds: float, hz: float = 300.0) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * hz * np.arange(int(seconds * SR)) / SR)).astype(np.float32)


def stretch(audio: np.ndarray, speed: float, chunk: int = 2048) -> tuple[np.ndarray, int]:
    """(output, samples out before finish)."""
    tempo = TempoStretch(speed, SR)
    pieces = [tempo.process(audio[i:i + chunk]) for i in range(0, len(audio), chunk)]
    streamed = sum(map(len, pieces))
    return np.concatenate([*pieces, tempo.finish()]), streamed


def dominant_hz(audio: np.ndarray) -> float:
    core = audio[len(audio) // 4: 3 * len(audio) // 4]
    return np.argmax(np.abs(np.fft.rfft(core))) * SR / len(core)


@pytest.mark.parametrize(("speed", "factors"), [(1.0, []), (0.5, [0.5]), (1.5, [1.5]), (2.0, [2.0]),
                                                (0.25, [0.5, 0.5]), (4.0, [2.0, 2.0]), (3.0, [math.sqrt(3)] * 2)])
def test_speeds_outside_half_to_double_are_chains_of_factors_inside_it(speed, factors):
    assert atempo_factors(speed) == pytest.approx(factors)
    assert math.prod(atempo_factors(speed)) == pytest.approx(speed)


@pytest.mark.parametrize("speed", [0.1, 5.0])
def test_speed_out_of_range_is_refused(speed):
    with pytest.raises(ValueError, match=r"speed must be in \[0.25, 4\]"):
        TempoStretch(speed, SR)


@pytest.mark.parametrize("speed", [0.25, 0.4, 0.5, 0.8, 1.25, 2.0, 3.0, 4.0])
def test_duration_scales_by_one_over_speed_and_pitch_stays(speed):
    audio = tone(2.0)
    out, streamed = stretch(audio, speed)
    assert len(out) == round(len(audio) / speed)
    assert len(out) - streamed <= SR // 2  # audio left the filter as it came in: at most a window waits for the end
    assert dominant_hz(out) == pytest.approx(300, abs=5)


def test_speed_one_passes_the_samples_through():
    audio = tone(0.5)
    out, streamed = stretch(audio, 1.0)
    assert streamed == len(audio)
    np.testing.assert_array_equal(out, audio)


def test_chunk_sizes_do_not_change_the_length():
    audio = tone(1.3)
    lengths = {len(stretch(audio, 0.7, chunk)[0]) for chunk in (100, 2048, 7777, len(audio))}
    assert lengths == {round(len(audio) / 0.7)}
