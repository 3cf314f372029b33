"""Audio encoding for HTTP responses: streamed and whole-file wav, flac, mp3, opus and pcm decode back."""

import io
import struct
import wave

import av
import numpy as np
import pytest
import soundfile as sf

from tritone.gateway.audio_encoding import FORMATS, StreamEncoder, content_type, encode_audio

RATE = 32_000
N = int(1.3 * RATE)  # 41600 samples
CHUNKS = [6400, 12800, 1000, 7000, 333, 3000]  # then the rest (11067): uneven, not codec-frame multiples
LSB = 1 / 32767
MP3_FRAME = 1152  # MPEG-1 Layer III at 32 kHz
# Streamed mp3 carries no Xing/LAME header, so decoders keep LAME's delay (576 + 529 samples) and the
# padding of the last frame: the decoded length is N plus less than three frames.
MP3_EXTRA_BOUND = 3 * MP3_FRAME
OPUS_FRAME = 960  # 20 ms at 48 kHz; Ogg pre-skip and the end granule trim the rest


def sine(rate=RATE, n=N):
    return (0.5 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)).astype(np.float32)


def stream(fmt, audio, rate=RATE):
    """-> (bytes returned by each encode() call, bytes returned by finish())."""
    encoder = StreamEncoder(fmt, rate)
    parts, start = [], 0
    for size in CHUNKS + [len(audio)]:
        parts.append(encoder.encode(audio[start : start + size]))
        start += size
        if start >= len(audio):
            break
    return parts, encoder.finish()


def av_decode(data):
    """Decode with FFmpeg (PyAV) -> (mono samples as float32 or int16, sample rate)."""
    with av.open(io.BytesIO(data)) as container:
        rate = container.streams.audio[0].rate
        frames = [frame.to_ndarray().reshape(-1) for frame in container.decode(audio=0)]
    return (np.concatenate(frames) if frames else np.zeros(0, np.float32)), rate


def sf_decode(data, fmt, dtype="float32"):
    if fmt == "pcm":
        return sf.read(io.BytesIO(data), dtype=dtype, format="RAW", subtype="PCM_16",
                       samplerate=RATE, channels=1, endian="LITTLE")
    return sf.read(io.BytesIO(data), dtype=dtype)


def best_correlation(reference, decoded, max_lag):
    """Highest normalised correlation of reference with decoded shifted by 0..max_lag samples."""
    n = min(len(reference), len(decoded) - max_lag)
    ref = reference[:n] / np.linalg.norm(reference[:n])
    return max(float(ref @ decoded[lag : lag + n]) / np.linalg.norm(decoded[lag : lag + n])
               for lag in range(max_lag + 1))


def test_content_types_are_exactly_the_bytes_sent():
    assert content_type("wav", RATE) == "audio/wav"
    assert content_type("flac", RATE) == "audio/flac"
    assert content_type("mp3", RATE) == "audio/mpeg"
    assert content_type("opus", RATE) == "audio/ogg; codecs=opus"
    assert content_type("pcm", RATE) == "audio/pcm;rate=32000;channels=1;format=s16le"
    assert content_type("pcm", 24000) == "audio/pcm;rate=24000;channels=1;format=s16le"


@pytest.mark.parametrize("call", [
    lambda: content_type("ogg", RATE),
    lambda: StreamEncoder("aiff", RATE),
    lambda: encode_audio(sine(), RATE, "WAV"),
])
def test_unknown_format_is_a_value_error_naming_the_allowed_ones(call):
    with pytest.raises(ValueError, match="wav, flac, mp3, opus, pcm"):
        call()


def test_sample_rate_out_is_48k_for_opus_only():
    assert {fmt: StreamEncoder(fmt, RATE).sample_rate_out for fmt in FORMATS} == {
        "wav": RATE, "flac": RATE, "mp3": RATE, "opus": 48_000, "pcm": RATE, "aac": RATE}


@pytest.mark.parametrize("fmt", ["wav", "pcm"])
def test_streamed_lossless_soundfile_reads_exact_samples(fmt):
    parts, tail = stream(fmt, sine())
    decoded, rate = sf_decode(b"".join(parts) + tail, fmt)
    assert rate == RATE
    assert len(decoded) == N
    assert np.max(np.abs(decoded - sine())) < 2 * LSB


def test_streamed_flac_is_one_whole_file_at_the_end_that_soundfile_reads_exactly():
    # A streamed STREAMINFO would say "total samples unknown", which libsndfile cannot read:
    # FLAC is buffered and sent whole when the stream ends, with its exact total and MD5.
    parts, tail = stream("flac", sine())
    assert parts and all(part == b"" for part in parts)
    assert tail == encode_audio(sine(), RATE, "flac")
    decoded, rate = sf.read(io.BytesIO(tail), dtype="int16")
    assert (rate, len(decoded), sf.info(io.BytesIO(tail)).frames) == (RATE, N, N)
    assert np.max(np.abs(decoded / 32768 - sine())) < 2 * LSB


def test_streamed_mp3_is_the_sine_within_the_codec_padding():
    parts, tail = stream("mp3", sine())
    decoded, rate = av_decode(b"".join(parts) + tail)
    assert rate == RATE  # libmp3lame keeps 32 kHz (an MPEG-1 rate)
    assert N <= len(decoded) < N + MP3_EXTRA_BOUND
    assert best_correlation(sine(), decoded, MP3_EXTRA_BOUND) > 0.9
    assert np.sqrt(np.mean(decoded**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)


def test_streamed_opus_is_the_sine_at_48k():
    parts, tail = stream("opus", sine())
    decoded, rate = av_decode(b"".join(parts) + tail)
    reference = sine(48_000, int(1.3 * 48_000))
    assert rate == 48_000
    assert abs(len(decoded) - len(reference)) <= OPUS_FRAME
    assert best_correlation(reference, decoded, OPUS_FRAME) > 0.9
    assert np.sqrt(np.mean(decoded**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)


@pytest.mark.parametrize("fmt", ["wav", "flac", "pcm"])
def test_whole_file_and_stream_decode_to_the_same_samples(fmt):
    parts, tail = stream(fmt, sine())
    whole = encode_audio(sine(), RATE, fmt)
    whole_samples, rate = sf_decode(whole, fmt, dtype="int16")  # soundfile reads the whole FLAC file
    assert rate == RATE and len(whole_samples) == N
    streamed = b"".join(parts) + tail
    np.testing.assert_array_equal(sf_decode(streamed, fmt, "int16")[0], whole_samples)
    if fmt in ("pcm", "flac"):
        assert whole == streamed


@pytest.mark.parametrize("fmt", ["mp3", "opus"])
def test_whole_lossy_file_has_the_exact_duration(fmt):
    # mp3: the Xing/LAME header (written because the whole file is seekable) lets FFmpeg drop the
    # delay and padding; opus: pre-skip and the end granule do. soundfile (libsndfile) agrees.
    data = encode_audio(sine(), RATE, fmt)
    rate_out = 48_000 if fmt == "opus" else RATE
    decoded, rate = av_decode(data)
    assert rate == rate_out and len(decoded) == int(1.3 * rate_out)
    assert sf.info(io.BytesIO(data)).frames == int(1.3 * rate_out)
    assert best_correlation(sine(rate_out, len(decoded)), decoded, 0) > 0.9


def test_streamed_wav_header_declares_unknown_sizes_and_players_read_to_the_end():
    parts, tail = stream("wav", sine())
    data = b"".join(parts) + tail
    assert data[:4] == b"RIFF" and data[8:16] == b"WAVEfmt " and data[36:40] == b"data"
    assert struct.unpack("<I", data[4:8])[0] == 0xFFFFFFFF
    assert struct.unpack("<I", data[40:44])[0] == 0xFFFFFFFF
    # fmt chunk: 16 bytes, PCM, mono, 32 kHz, 64000 bytes/s, block align 2, 16 bits
    assert struct.unpack("<IHHIIHH", data[16:36]) == (16, 1, 1, RATE, 2 * RATE, 2, 16)
    assert len(data) == 44 + 2 * N
    # libsndfile clamps the unknown data size to the bytes present: it reports the true length.
    assert sf.info(io.BytesIO(data)).frames == N
    assert len(av_decode(data)[0]) == N  # FFmpeg (as browsers and ffplay use it)
    with wave.open(io.BytesIO(data)) as w:  # the stdlib reports 2**31-1 frames but reads to the end
        assert len(w.readframes(2**31 - 1)) == 2 * N


def test_whole_wav_has_exact_sizes():
    data = encode_audio(sine(), RATE, "wav")
    assert len(data) == 44 + 2 * N
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8
    assert struct.unpack("<I", data[40:44])[0] == 2 * N
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getnframes(), w.getframerate(), w.getnchannels(), w.getsampwidth()) == (N, RATE, 1, 2)


@pytest.mark.parametrize("fmt", ["wav", "pcm"])
def test_uncompressed_formats_return_bytes_on_the_first_encode(fmt):
    parts, _ = stream(fmt, sine())
    assert len(parts[0]) == 2 * CHUNKS[0] + (44 if fmt == "wav" else 0)


@pytest.mark.parametrize("fmt", ["mp3", "opus"])
def test_codecs_stream_most_bytes_before_finish(fmt):
    parts, tail = stream(fmt, sine())
    sent_early = sum(len(p) for p in parts)
    assert sent_early > 0
    assert sent_early > len(tail)  # the codec only holds back its last frames


def test_pcm_clips_and_rounds():
    audio = np.array([0.0, 1.5, -2.0, 1.0, -1.0, 0.7 * LSB, -0.7 * LSB, 0.3 * LSB, np.nan], np.float32)
    expected = [0, 32767, -32767, 32767, -32767, 1, -1, 0, 0]
    assert np.frombuffer(encode_audio(audio, RATE, "pcm"), "<i2").tolist() == expected
    encoder = StreamEncoder("pcm", RATE)
    assert np.frombuffer(encoder.encode(audio) + encoder.finish(), "<i2").tolist() == expected


def test_empty_stream_gives_an_empty_or_header_only_file():
    wav = StreamEncoder("wav", RATE).finish()  # nothing sent yet: the exact header of an empty file
    assert len(wav) == 44 and struct.unpack("<I", wav[40:44])[0] == 0
    assert sf.info(io.BytesIO(wav)).frames == 0
    assert StreamEncoder("pcm", RATE).finish() == b""
    assert StreamEncoder("mp3", RATE).finish() == b""  # bare MPEG frames, none encoded
    flac = StreamEncoder("flac", RATE).finish()
    assert flac.startswith(b"fLaC")
    assert av_decode(flac)[0].size == 0  # STREAMINFO (+ encoder tag), no audio frames (total 0 also means "unknown")
    opus = StreamEncoder("opus", RATE).finish()
    assert opus.startswith(b"OggS") and b"OpusHead" in opus and b"OpusTags" in opus


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_whole_file_does_not_crash(fmt):
    data = encode_audio(np.zeros(0, np.float32), RATE, fmt)
    assert isinstance(data, bytes)


def test_finished_encoder_refuses_more_audio():
    encoder = StreamEncoder("wav", RATE)
    encoder.finish()
    with pytest.raises(RuntimeError):
        encoder.encode(sine())
