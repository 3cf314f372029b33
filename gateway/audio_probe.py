"""What an uploaded clip is, read from its bytes' headers alone, and its decoding within a budget.

Voice uploads are checked with `probe` before anything decodes them, so a bad upload (random
bytes, a truncated file, ten minutes of audio, a telephone-rate recording) is refused with a
message naming the problem, cheaply, and never reaches FFmpeg's decoders or Triton.

A header can lie (a FLAC whose STREAMINFO says 5 s but whose frames hold an hour), so
`decode_within` never trusts it: it resamples each decoded frame to the target rate as it goes
and stops as soon as more than the allowed seconds have come out, for every container. Memory is
bounded by those seconds at the target rate, whatever the file's rate or its real length.

The format is sniffed from the content (RIFF/WAVE, fLaC, OggS, an MPEG audio frame, after an
optional ID3v2 tag) and must agree with the file name's extension. The duration comes from:
- WAV: the data chunk's size over the block size (a size larger than the file: truncated);
- FLAC: STREAMINFO's total samples (0, "unknown", is refused: nothing short of decoding tells);
- MP3: the Xing/Info or VBRI header's frame count, else (constant bit rate) the bytes over the bit rate;
- Ogg (Vorbis or Opus): the granule position of the last page.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from itertools import chain
from pathlib import PurePath

import av
import numpy as np

EXTENSIONS = {".wav": "wav", ".wave": "wav", ".flac": "flac", ".mp3": "mp3", ".ogg": "ogg", ".oga": "ogg",
              ".opus": "ogg"}
NAMES = {"wav": "WAV", "flac": "FLAC", "mp3": "MP3", "ogg": "Ogg"}


class ProbeError(ValueError):
    """A clip refused from its headers; `status` is the HTTP status (415: not a format we take, 400: bad file)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class ClipTooLong(ProbeError):
    """Decoding gave more than `seconds` of audio (and stopped there), whatever the header said."""

    def __init__(self, seconds: float):
        super().__init__(400, f"the clip holds more than {seconds:g} s of audio (decoding stopped there)")
        self.seconds = seconds


@dataclass(frozen=True)
class ClipInfo:
    format: str  # wav, flac, mp3, ogg
    codec: str
    sample_rate: int
    channels: int
    duration: float  # seconds


def _truncated(fmt: str, detail: str) -> ProbeError:
    return ProbeError(400, f"truncated or damaged {NAMES[fmt]} file: {detail}")


# --- sniffing ----------------------------------------------------------------------------------------


def _id3_end(data: bytes) -> int:
    """Offset after an ID3v2 tag (0 without one)."""
    if data[:3] != b"ID3" or len(data) < 10:
        return 0
    size = (data[6] & 0x7F) << 21 | (data[7] & 0x7F) << 14 | (data[8] & 0x7F) << 7 | (data[9] & 0x7F)
    return 10 + size + (10 if data[5] & 0x10 else 0)


def sniff(data: bytes) -> str | None:
    """wav, flac, mp3, ogg, or None."""
    if data[:4] in (b"RIFF", b"RF64") and data[8:12] == b"WAVE":
        return "wav"
    if data[:4] == b"OggS":
        return "ogg"
    start = _id3_end(data)
    if data[start:start + 4] == b"fLaC":
        return "flac"
    if _first_mp3_frame(data, start) is not None:
        return "mp3"
    return None


# --- WAV -------------------------------------------------------------------------------------------------


def _wav(data: bytes) -> ClipInfo:
    fmt = None
    pos = 12
    while pos + 8 <= len(data):
        chunk, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if chunk == b"fmt ":
            if size < 16 or body + 16 > len(data):
                raise _truncated("wav", "the fmt chunk is incomplete")
            tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", data, body)
            if channels == 0 or rate == 0 or block_align == 0:
                raise _truncated("wav", f"the fmt chunk says {channels} channels at {rate} Hz, {block_align}-byte blocks")
            fmt = (tag, channels, rate, block_align, bits)
        elif chunk == b"data":
            if fmt is None:
                raise _truncated("wav", "the data chunk comes before the fmt chunk")
            available = len(data) - body
            if size in (0, 0xFFFFFFFF):  # a streamed WAV (or RF64): the audio runs to the end of the file
                size = available
            elif size > available:
                raise _truncated("wav", f"the header announces {size} bytes of audio, the file holds {available}")
            tag, channels, rate, block_align, bits = fmt
            codec = {1: f"pcm{bits}", 3: f"float{bits}", 6: "alaw", 7: "mulaw", 0xFFFE: f"extensible{bits}"}
            return ClipInfo("wav", codec.get(tag, f"tag 0x{tag:04x}"), rate, channels, size // block_align / rate)
        pos = body + size + (size & 1)
    raise _truncated("wav", "no fmt chunk" if fmt is None else "no data chunk")


# --- FLAC -------------------------------------------------------------------------------------------------


def _flac(data: bytes) -> ClipInfo:
    pos = _id3_end(data) + 4
    if len(data) < pos + 4 + 34 or data[pos] & 0x7F != 0:
        raise _truncated("flac", "no STREAMINFO block")
    info = data[pos + 4:pos + 4 + 34]
    rate = info[10] << 12 | info[11] << 4 | info[12] >> 4
    channels = (info[12] >> 1 & 7) + 1
    total = (info[13] & 0x0F) << 32 | struct.unpack_from(">I", info, 14)[0]
    while True:  # walk the metadata blocks: audio frames must follow them
        last, length = data[pos] & 0x80, int.from_bytes(data[pos + 1:pos + 4], "big")
        pos += 4 + length
        if pos > len(data):
            raise _truncated("flac", "it ends inside its metadata")
        if last:
            break
        if pos + 4 > len(data):
            raise _truncated("flac", "it ends inside its metadata")
    if pos >= len(data):
        raise _truncated("flac", "it has no audio frames")
    if rate == 0:
        raise _truncated("flac", "STREAMINFO gives no sample rate")
    if total == 0:
        raise ProbeError(400, "the FLAC header does not give the length (total samples 0); "
                              "re-encode the clip with a length")
    return ClipInfo("flac", "flac", rate, channels, total / rate)


# --- MP3 --------------------------------------------------------------------------------------------------

_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}  # by version bits
_MP3_KBPS = {  # (MPEG-1?, layer) -> bit rates by index 1..14
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_KBPS[(False, 3)] = _MP3_KBPS[(False, 2)]


@dataclass(frozen=True)
class _Mp3Frame:
    offset: int
    mpeg1: bool
    layer: int
    kbps: int
    rate: int
    channels: int
    length: int  # bytes
    samples: int  # per frame


def _mp3_frame(data: bytes, pos: int) -> _Mp3Frame | None:
    if pos + 4 > len(data) or data[pos] != 0xFF or data[pos + 1] & 0xE0 != 0xE0:
        return None
    version, layer_bits = data[pos + 1] >> 3 & 3, data[pos + 1] >> 1 & 3
    rate_index, kbps_index = data[pos + 2] >> 2 & 3, data[pos + 2] >> 4
    if version == 1 or layer_bits == 0 or rate_index == 3 or kbps_index in (0, 15):
        return None
    mpeg1, layer = version == 3, 4 - layer_bits
    kbps, rate = _MP3_KBPS[(mpeg1, layer)][kbps_index - 1], _MP3_RATES[version][rate_index]
    padding = data[pos + 2] >> 1 & 1
    if layer == 1:
        length, samples = (12 * kbps * 1000 // rate + padding) * 4, 384
    else:
        samples = 1152 if layer == 2 or mpeg1 else 576
        length = samples // 8 * kbps * 1000 // rate + padding
    channels = 1 if data[pos + 3] >> 6 == 3 else 2
    return _Mp3Frame(pos, mpeg1, layer, kbps, rate, channels, length, samples)


def _first_mp3_frame(data: bytes, start: int, search: int = 4096) -> _Mp3Frame | None:
    """The first frame whose successor (if the file goes on) is a frame too: a lone 0xFFE sync is chance."""
    for pos in range(start, min(len(data), start + search)):
        frame = _mp3_frame(data, pos)
        if frame is not None and (frame.offset + frame.length + 4 > len(data)
                                  or _mp3_frame(data, frame.offset + frame.length) is not None):
            return frame
    return None


def _mp3(data: bytes) -> ClipInfo:
    frame = _first_mp3_frame(data, _id3_end(data))
    if frame is None or frame.offset + frame.length > len(data):
        raise _truncated("mp3", "its first frame is incomplete")
    side_info = (32 if frame.channels == 2 else 17) if frame.mpeg1 else (17 if frame.channels == 2 else 9)
    xing = frame.offset + 4 + side_info
    frames = None
    if data[xing:xing + 4] in (b"Xing", b"Info"):
        flags = struct.unpack_from(">I", data, xing + 4)[0]
        if flags & 1:
            frames = struct.unpack_from(">I", data, xing + 8)[0]
        if flags & 3 == 3 and struct.unpack_from(">I", data, xing + 12)[0] > len(data) - frame.offset:
            raise _truncated("mp3", "its Xing header announces more bytes than the file holds")
    elif data[frame.offset + 36:frame.offset + 40] == b"VBRI":
        frames = struct.unpack_from(">I", data, frame.offset + 36 + 14)[0]
    if frames is not None:
        duration = frames * frame.samples / frame.rate
    else:  # constant bit rate: bytes of audio (less an ID3v1 tag) over the bit rate
        audio_bytes = len(data) - frame.offset - (128 if data[-128:-125] == b"TAG" else 0)
        duration = audio_bytes * 8 / (frame.kbps * 1000)
    return ClipInfo("mp3", f"mpeg{'1' if frame.mpeg1 else '2'} layer {frame.layer}", frame.rate, frame.channels,
                    duration)


# --- Ogg --------------------------------------------------------------------------------------------------


def _ogg_page(data: bytes, pos: int) -> tuple[int, int, int, int] | None:
    """(granule, serial, payload start, page end) of a complete page at pos."""
    if data[pos:pos + 4] != b"OggS" or pos + 27 > len(data):
        return None
    granule, serial = struct.unpack_from("<qI", data, pos + 6)
    segments = data[pos + 26]
    table_end = pos + 27 + segments
    if table_end > len(data):
        return None
    end = table_end + sum(data[pos + 27:table_end])
    return (granule, serial, table_end, end) if end <= len(data) else None


def _ogg(data: bytes) -> ClipInfo:
    first = _ogg_page(data, 0)
    if first is None:
        raise _truncated("ogg", "its first page is incomplete")
    _, serial, payload, _ = first
    packet = data[payload:first[3]]
    if packet.startswith(b"\x01vorbis") and len(packet) >= 16:
        codec, channels, rate = "vorbis", packet[11], struct.unpack_from("<I", packet, 12)[0]
        skip, clock = 0, rate
    elif packet.startswith(b"OpusHead") and len(packet) >= 16:
        codec, channels = "opus", packet[9]
        skip, input_rate = struct.unpack_from("<HI", packet, 10)
        rate, clock = input_rate or 48000, 48000  # Opus always runs at 48 kHz; the header keeps the source's rate
    else:
        raise ProbeError(415, "the Ogg file holds neither Vorbis nor Opus audio")
    last = data.rfind(b"OggS")
    while last > 0:  # the last complete page of this stream
        page = _ogg_page(data, last)
        if page is not None and page[1] == serial and page[0] >= 0:
            break
        last = data.rfind(b"OggS", 0, last)
    if last <= 0:
        raise _truncated("ogg", "it has no complete audio page")
    if rate == 0 or channels == 0:
        raise _truncated("ogg", f"its header says {channels} channels at {rate} Hz")
    return ClipInfo("ogg", codec, rate, channels, max(0, page[0] - skip) / clock)


_PARSERS = {"wav": _wav, "flac": _flac, "mp3": _mp3, "ogg": _ogg}


def probe(data: bytes, filename: str | None) -> ClipInfo:
    """The clip's format and properties from its headers. Raises ProbeError naming the problem."""
    if not data:
        raise ProbeError(400, "the file is empty")
    suffix = PurePath(filename or "").suffix.lower()
    allowed = ", ".join(sorted({f".{fmt}" for fmt in NAMES}))
    if suffix not in EXTENSIONS:
        named = f"the file name {filename!r} has no extension" if not suffix else f"{suffix} files are not taken"
        raise ProbeError(415, f"{named}; upload a {allowed} file")
    fmt = sniff(data)
    if fmt is None:
        raise ProbeError(415, "the content is not WAV, FLAC, MP3 or Ogg audio")
    if EXTENSIONS[suffix] != fmt:
        raise ProbeError(415, f"the content is {NAMES[fmt]} but the file name ends in {suffix}")
    try:
        return _PARSERS[fmt](data)
    except (struct.error, IndexError):
        raise _truncated(fmt, "a header ends early") from None


# --- decoding within a budget --------------------------------------------------------------------------


def decode_within(data: bytes, sample_rate: int, max_seconds: float) -> np.ndarray:
    """The clip's first audio stream as mono float32 [samples] in [-1, 1] at `sample_rate`.

    Each decoded frame is resampled and down-mixed (channels averaged) at once, and decoding stops
    with ClipTooLong once more than `max_seconds` have come out. The samples are those of
    client.clip.decode_clip for a clip within the budget. Raises ProbeError (400) when the clip
    cannot be decoded.
    """
    limit = int(max_seconds * sample_rate)
    pieces, count = [], 0
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.audio:
                raise ProbeError(400, "the file holds no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="fltp", layout=stream.layout, rate=sample_rate)
            for frame in chain(container.decode(stream), [None]):  # None: flush the resampler
                for resampled in resampler.resample(frame):
                    pieces.append(resampled.to_ndarray().mean(axis=0))  # [channels, samples] -> mono
                    count += len(pieces[-1])
                    if count > limit:
                        raise ClipTooLong(max_seconds)
    except (av.error.FFmpegError, UnicodeDecodeError) as error:
        raise ProbeError(400, f"cannot decode the clip: {error}") from None
    audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    return np.clip(audio, -1.0, 1.0).astype(np.float32)
