"""Decoding a voice clip within a budget of samples actually decoded: a header that understates the length
(a FLAC bomb) cannot make the gateway decode an hour, and a 192 kHz clip is resampled as it is decoded."""

import io
import struct
import time
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from tritone.client.clip import decode_clip
from tritone.gateway.audio_probe import ClipTooLong, ProbeError, decode_within, probe

SR = 24000  # the speech codec's rate
BOMB_RATE = 48000
BOMB_MINUTES = 10


def tone(seconds: float, rate: int, channels: int = 1, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    wave = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, np.stack([wave] * channels, axis=1), rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def set_flac_total_samples(data: bytes, total: int) -> bytes:
    """STREAMINFO's total samples (36 bits from the low nibble of its byte 13) set to `total`, its MD5 zeroed."""
    info = bytearray(data)
    start = 4 + 4  # "fLaC", the metadata block header
    info[start + 13] = (info[start + 13] & 0xF0) | (total >> 32 & 0x0F)
    struct.pack_into(">I", info, start + 14, total & 0xFFFFFFFF)
    info[start + 18:start + 34] = bytes(16)
    return bytes(info)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """Ten minutes of 48 kHz silence whose header says 5 s: a few hundred KB."""
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", BOMB_RATE, 1, format="FLAC", subtype="PCM_16") as out:
        for _ in range(BOMB_MINUTES):
            out.write(np.zeros(60 * BOMB_RATE, np.int16))
    return set_flac_total_samples(buffer.getvalue(), 5 * BOMB_RATE)


def peak_bytes(function, *args) -> tuple[int, object]:
    """The peak of Python/numpy allocations while `function` runs, and its result or the exception it raised."""
    tracemalloc.start()
    try:
        try:
            result = function(*args)
        except Exception as error:  # noqa: BLE001 - returned for the caller to assert on
            result = error
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


def test_the_bomb_fits_the_size_limit_and_its_header_claims_5_seconds(bomb):
    assert len(bomb) < 1_000_000
    info = probe(bomb, "bomb.flac")
    assert (info.format, info.sample_rate, info.channels, info.duration) == ("flac", BOMB_RATE, 1, 5.0)


def test_the_bomb_is_refused_after_decoding_at_most_the_budget(bomb):
    started = time.monotonic()
    peak, error = peak_bytes(decode_within, bomb, SR, 30.5)
    elapsed = time.monotonic() - started
    assert isinstance(error, ClipTooLong) and error.status == 400 and error.seconds == 30.5
    assert str(error) == "the clip holds more than 30.5 s of audio (decoding stopped there)"
    # 30.5 s of mono float32 at 24 kHz is 2.9 MB; decoding all ten minutes would hold 57.6 MB
    assert peak < 8_000_000, peak
    full_peak, audio = peak_bytes(decode_clip, io.BytesIO(bomb), SR)
    assert len(audio) == BOMB_MINUTES * 60 * SR and full_peak > 50_000_000  # what an unbounded decode costs
    assert elapsed < 10


@pytest.mark.parametrize(("rate", "channels", "fmt", "subtype"), [
    (192000, 2, "WAV", "PCM_24"),
    (192000, 1, "FLAC", "PCM_24"),
])
def test_a_192_khz_clip_is_resampled_to_the_codec_rate(rate, channels, fmt, subtype):
    audio = decode_within(tone(3.0, rate, channels, fmt, subtype), SR, 30.5)
    assert audio.dtype == np.float32 and audio.shape == (3 * SR,)
    spectrum = np.abs(np.fft.rfft(audio))
    assert np.argmax(spectrum) * SR / len(audio) == pytest.approx(220, abs=1)  # the tone, at its pitch


@pytest.mark.parametrize(("data", "name"), [
    (tone(2.0, 44100, 2, "MP3", "MPEG_LAYER_III"), "stereo 44.1 kHz mp3"),
    (tone(3.0, 48000, 1, "OGG", "OPUS"), "48 kHz opus"),
    (tone(3.0, SR, 1, "FLAC"), "24 kHz flac"),
])
def test_within_the_budget_the_samples_are_the_clis(data, name):
    np.testing.assert_array_equal(decode_within(data, SR, 30.5), decode_clip(io.BytesIO(data), SR))


def test_a_clip_just_over_the_budget_is_refused_and_one_at_it_is_not():
    assert len(decode_within(tone(2.0, SR), SR, 2.0)) == 2 * SR
    with pytest.raises(ClipTooLong):
        decode_within(tone(2.1, SR), SR, 2.0)


def test_undecodable_bytes_are_a_400_naming_the_problem():
    with pytest.raises(ProbeError) as caught:
        decode_within(b"RIFF\x00\x00\x00\x00WAVEjunk", SR, 30.0)
    assert caught.value.status == 400 and str(caught.value).startswith("cannot decode the clip: ")
