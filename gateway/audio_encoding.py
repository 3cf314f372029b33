"""Encode mono float32 PCM (values in [-1, 1], arriving in chunks) into the gateway's HTTP audio formats.

wav and pcm are framed here (16-bit little-endian PCM); flac, mp3 and opus go through PyAV (FFmpeg's
flac encoder, libmp3lame, libopus) muxing into an in-memory writer that is drained after every call.

Streaming (StreamEncoder) versus whole files (encode_audio):
- wav: the streamed header declares RIFF and data sizes of 0xFFFFFFFF (length unknown); libsndfile,
  FFmpeg and Python's wave module then read up to the end of the bytes (soundfile reports the true
  frame count for a complete buffer). encode_audio writes the exact sizes.
- flac: buffered, sent whole when the stream ends (exact total samples + MD5). A streamed FLAC's
  STREAMINFO cannot be rewritten once sent, so it would say total samples 0 ("unknown"), which
  libsndfile (python-soundfile) cannot read; few players play FLAC as it arrives anyway.
- mp3: streamed without a Xing/LAME header, so decoders keep the encoder delay and padding
  (up to about three 1152-sample frames extra); encode_audio's file has the Xing header (gapless).
- opus: Ogg Opus at 48 kHz either way; pre-skip and the end granule make the decoded length exact.
- aac: AAC-LC in ADTS (FFmpeg's native encoder), a header per frame, so any prefix of the stream
  decodes; decoders keep the encoder's priming (1024 samples) and the last frame's padding.
"""

from __future__ import annotations

import io
import struct
from fractions import Fraction

import av
import numpy as np

FORMATS: tuple[str, ...] = ("wav", "flac", "mp3", "opus", "pcm", "aac")

OPUS_SAMPLE_RATE = 48_000
_UNKNOWN_SIZE = 0xFFFFFFFF
# fmt -> (container, encoder, encoder sample format, bit rate or None)
_AV_CODECS = {
    "flac": ("flac", "flac", "s16", None),
    "mp3": ("mp3", "libmp3lame", "fltp", 128_000),
    "opus": ("ogg", "libopus", "flt", 64_000),
    "aac": ("adts", "aac", "fltp", 128_000),
}
# flush_packets: hand every packet to the writer at once (not when FFmpeg's 32 KiB I/O buffer fills).
_MUXER_OPTIONS = {
    "flac": {"flush_packets": "1", "metadata_header_padding": "0"},  # no 8 KiB PADDING block up front
    "mp3": {"flush_packets": "1", "id3v2_version": "0"},  # bare MPEG frames: an empty stream is b""
    # One Opus packet (20 ms) per Ogg page: pages leave the muxer at once, not after a second of audio.
    "ogg": {"flush_packets": "1", "page_duration": "20000"},
    "adts": {"flush_packets": "1"},
}


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unsupported audio format {fmt!r}; allowed: {', '.join(FORMATS)}")


def encoded_rate(fmt: str, sample_rate: int) -> int:
    """The rate a client decodes `fmt` at: Ogg Opus is always 48 kHz, the rest keep the model's rate."""
    return OPUS_SAMPLE_RATE if fmt == "opus" else sample_rate


def content_type(fmt: str, sample_rate: int) -> str:
    """The Content-Type of what StreamEncoder/encode_audio produce for fmt."""
    _check_format(fmt)
    return {
        "wav": "audio/wav",
        "flac": "audio/flac",
        "mp3": "audio/mpeg",
        "opus": "audio/ogg; codecs=opus",
        "aac": "audio/aac",
        # raw s16le (as OpenAI's pcm); audio/L16 would promise big-endian (RFC 2586)
        "pcm": f"audio/pcm;rate={int(sample_rate)};channels=1;format=s16le",
    }[fmt]


def _mono_float(audio: np.ndarray) -> np.ndarray:
    """A 1-D float32 copy, NaN/inf replaced, clipped to [-1, 1]."""
    a = np.atleast_1d(np.squeeze(np.asarray(audio, dtype=np.float32)))
    if a.ndim != 1:
        raise ValueError(f"expected mono audio (one channel), got shape {np.shape(audio)}")
    return np.clip(np.nan_to_num(a, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)


def _pcm16(audio: np.ndarray) -> np.ndarray:
    """Signed 16-bit samples: clipped, scaled by 32767 and rounded (not truncated)."""
    return np.rint(_mono_float(audio) * 32767.0).astype("<i2")


def _wav_header(sample_rate: int, data_size: int | None) -> bytes:
    """44-byte canonical header for 16-bit mono PCM; data_size None means unknown (0xFFFFFFFF sizes)."""
    data = _UNKNOWN_SIZE if data_size is None else data_size
    riff = _UNKNOWN_SIZE if data_size is None else 36 + data_size
    return (
        b"RIFF" + struct.pack("<I", riff) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, 2 * sample_rate, 2, 16)
        + b"data" + struct.pack("<I", data)
    )


class _Drain:
    """Write-only in-memory sink. It has no seek/tell, so FFmpeg treats the output as a live stream
    and never goes back to patch bytes that have already been sent."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def write(self, data) -> int:
        self._buf += data
        return len(data)

    def take(self) -> bytes:
        out = bytes(self._buf)
        self._buf.clear()
        return out


class _AvWriter:
    """One PyAV container + audio stream. Input is re-chunked (and for opus resampled to 48 kHz) by
    an AudioResampler whose frame_size is the encoder's; leftover samples wait there for the next call."""

    def __init__(self, fmt: str, sample_rate: int, file) -> None:
        container_fmt, codec, sample_fmt, bit_rate = _AV_CODECS[fmt]
        self.rate_in = sample_rate
        self.rate_out = OPUS_SAMPLE_RATE if fmt == "opus" else sample_rate
        self._s16 = sample_fmt == "s16"
        options = _MUXER_OPTIONS[container_fmt]
        self._container = av.open(file, "w", format=container_fmt, container_options=options)
        self._stream = self._container.add_stream(codec, rate=self.rate_out, layout="mono")
        ctx = self._stream.codec_context
        ctx.format = sample_fmt
        ctx.time_base = Fraction(1, self.rate_out)
        if bit_rate:
            ctx.bit_rate = bit_rate
        self._container.start_encoding()  # opens the encoder (frame_size is set now), writes the header
        self._resampler = av.AudioResampler(
            format=sample_fmt, layout="mono", rate=self.rate_out, frame_size=ctx.frame_size or None
        )
        self._pts = 0

    def write(self, audio: np.ndarray | None) -> None:
        """Encode a chunk; None flushes the resampler, the encoder and writes the trailer."""
        if audio is None:
            self._mux(self._resampler.resample(None))
            self._container.mux(self._stream.encode(None))
            self._container.close()
            return
        if np.size(audio) == 0:
            return
        if self._s16:  # lossless: the same int16 samples as wav/pcm
            frame = av.AudioFrame.from_ndarray(_pcm16(audio)[None, :], format="s16", layout="mono")
        else:
            frame = av.AudioFrame.from_ndarray(_mono_float(audio)[None, :], format="flt", layout="mono")
        frame.sample_rate = self.rate_in
        self._mux(self._resampler.resample(frame))

    def _mux(self, frames) -> None:
        for frame in frames:
            frame.pts, frame.time_base = self._pts, Fraction(1, self.rate_out)
            self._pts += frame.samples
            self._container.mux(self._stream.encode(frame))


class StreamEncoder:
    """Encode a stream of mono float32 chunks; the concatenation of every returned bytes is one valid file
    (FLAC's all at finish)."""

    def __init__(self, fmt: str, sample_rate: int):
        _check_format(fmt)
        if int(sample_rate) <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        self.fmt = fmt
        self.sample_rate = int(sample_rate)
        self._header_sent = False
        self._finished = False
        self._drain: _Drain | None = None
        self._av: _AvWriter | None = None
        self._buffered: list[np.ndarray] | None = [] if fmt == "flac" else None  # sent whole at finish
        if fmt in _AV_CODECS and self._buffered is None:
            self._drain = _Drain()
            self._av = _AvWriter(fmt, self.sample_rate, self._drain)

    @property
    def sample_rate_out(self) -> int:
        return encoded_rate(self.fmt, self.sample_rate)

    def encode(self, audio: np.ndarray) -> bytes:
        """Bytes that can be sent now (b"" while a codec is still buffering)."""
        self._check_open()
        if self._buffered is not None:
            self._buffered.append(np.asarray(audio, np.float32).reshape(-1))
            return b""
        if self._av is not None:
            self._av.write(audio)
            return self._drain.take()
        out = _pcm16(audio).tobytes()
        if self.fmt == "wav" and not self._header_sent:
            out = _wav_header(self.sample_rate, None) + out
        self._header_sent = True
        return out

    def finish(self) -> bytes:
        """Flush codecs and write trailers; returns the last bytes of the stream."""
        self._check_open()
        self._finished = True
        if self._buffered is not None:
            return encode_audio(np.concatenate([np.zeros(0, np.float32), *self._buffered]), self.sample_rate, self.fmt)
        if self._av is not None:
            self._av.write(None)
            return self._drain.take()
        if self.fmt == "wav" and not self._header_sent:
            return _wav_header(self.sample_rate, 0)  # nothing was sent: the exact (empty) header
        return b""

    def _check_open(self) -> None:
        if self._finished:
            raise RuntimeError("StreamEncoder already finished")


def encode_audio(audio: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """A whole file for download: exact WAV sizes, FLAC STREAMINFO total + MD5, MP3 Xing/LAME header."""
    _check_format(fmt)
    sample_rate = int(sample_rate)
    if fmt in ("wav", "pcm"):
        pcm = _pcm16(audio).tobytes()
        return (_wav_header(sample_rate, len(pcm)) if fmt == "wav" else b"") + pcm
    file = io.BytesIO()  # seekable: the muxer rewrites its header with the final totals at the trailer
    writer = _AvWriter(fmt, sample_rate, file)
    writer.write(audio)
    writer.write(None)
    return file.getvalue()
