"""Voices for speech: built-in speakers, OpenAI's names for them, and cloned voices.

A request's voice is resolved in this order: a built-in speaker (`speech_voices`, the speakers
the checkpoint was fine-tuned on: sent as `voice`), an OpenAI voice name (`speech_voice_aliases`,
a default table mapping each to a built-in speaker), then a stored voice by id or name (sent as
its codes and transcript, `reference_codes` + `reference_text`).

Cloning checks the upload from its headers first (gateway/audio_probe.py: size, format and
extension, duration, sample rate, channels), then decodes it to 24 kHz mono within a budget of
samples actually decoded (a header that understates the length cannot make it decode an hour),
and only then, when no stored voice has the same content, encodes it once through Triton's codec
encoder.
"""

from __future__ import annotations

import asyncio
import hashlib

import numpy as np

from tritone.ensemble.orpheus.format import TOKENS_PER_FRAME
from tritone.gateway import voice_store as vs
from tritone.gateway.audio_probe import ClipInfo, ClipTooLong, ProbeError, decode_within, probe
from tritone.gateway.errors import APIError
from tritone.gateway.settings import Settings
from tritone.gateway.triton import Triton

MAX_NAME_CHARS = 64
MAX_TRANSCRIPT_CHARS = 1000
DECODE_MARGIN_S = 0.5  # decoded audio may exceed the longest clip by a decoder's padding, not more


def voice_owner(settings: Settings, key: str) -> str:
    """Whose voices a caller sees: its API key's; everyone shares them when the gateway has no keys."""
    return key if settings.api_keys else ""


def builtin_speaker(settings: Settings, voice: str) -> str | None:
    """The built-in speaker `voice` names (itself or through an OpenAI name), or None."""
    name = voice.strip().lower()
    if name in settings.speech_voices:
        return name
    return settings.speech_voice_aliases.get(name)


def builtin_voices(settings: Settings) -> list[dict]:
    aliases = settings.speech_voice_aliases
    return [{"id": name, "object": "voice", "type": "builtin", "name": name,
             "aliases": sorted(alias for alias, speaker in aliases.items() if speaker == name)}
            for name in settings.speech_voices]


def _bad_file(status: int, message: str) -> APIError:
    code = {413: "file_too_large", 415: "unsupported_audio_format"}.get(status, "invalid_audio")
    return APIError(status, f"file: {message}", param="file", code=code)


def _size(count: int) -> str:
    return f"{count / 2**20:.1f} MiB" if count >= 2**20 else f"{count / 1024:.0f} KiB"


def too_large(size: int, settings: Settings) -> APIError:
    return _bad_file(413, f"{_size(size)} is over the {_size(settings.voice_max_bytes)} limit for a voice clip")


def check_size(size: int, settings: Settings) -> None:
    if size > settings.voice_max_bytes:
        raise too_large(size, settings)


def check_clip(data: bytes, filename: str | None, settings: Settings) -> ClipInfo:
    """Everything that can be refused from the bytes' headers, before any decoding."""
    check_size(len(data), settings)
    try:
        info = probe(data, filename)
    except ProbeError as error:
        raise _bad_file(error.status, str(error)) from None
    if not 1 <= info.channels <= 2:
        raise _bad_file(422, f"the clip has {info.channels} channels; a voice clip must be mono or stereo")
    if info.sample_rate < settings.voice_min_sample_rate:
        raise _bad_file(422, f"the clip is sampled at {info.sample_rate} Hz; a voice clip needs at least "
                             f"{settings.voice_min_sample_rate} Hz")
    low, high = settings.voice_min_seconds, settings.voice_max_seconds
    if not low <= info.duration <= high:
        raise _bad_file(422, f"the clip lasts {info.duration:.2f} s; a voice clip must last {low:g} to {high:g} s")
    return info


def decoded_clip(data: bytes, info: ClipInfo, settings: Settings) -> np.ndarray:
    """The clip at the speech codec's rate, mono, within voice_max_seconds: decoding stops beyond them."""
    rate, low, high = settings.speech_sample_rate, settings.voice_min_seconds, settings.voice_max_seconds
    try:
        clip = decode_within(data, rate, high + DECODE_MARGIN_S)
    except ClipTooLong as error:
        raise _bad_file(422, f"{error}, though its header says {info.duration:.2f} s; a voice clip must last "
                             f"{low:g} to {high:g} s") from None
    except ProbeError as error:
        raise _bad_file(error.status, str(error)) from None
    clip = clip[:int(high * rate)]  # a decoder's padding, not more audio
    if len(clip) < low * rate * 0.95:
        raise _bad_file(422, f"the clip decodes to {len(clip) / rate:.2f} s of audio; a voice clip must last "
                             f"{low:g} to {high:g} s")
    return clip


def check_name(name: str, settings: Settings) -> str:
    name = name.strip()
    if not name:
        raise APIError(422, "name: must not be blank", param="name", code="invalid_value")
    if builtin_speaker(settings, name) is not None or name.lower().startswith("voice_"):
        raise APIError(422, f"name: {name!r} is taken by a built-in voice or looks like a voice id; choose another",
                       param="name", code="invalid_value")
    return name


def content_hash(clip: np.ndarray, transcript: str) -> str:
    return hashlib.sha256(np.ascontiguousarray(clip, np.float32).tobytes() + b"\0" + transcript.encode()).hexdigest()


async def clone(store: vs.VoiceStore, triton: Triton, settings: Settings, owner: str, *, data: bytes,
                filename: str | None, name: str, transcript: str) -> tuple[vs.Voice, bool]:
    """(voice, created): validate, decode, and encode the clip unless this content is stored already."""
    name = check_name(name, settings)
    transcript = " ".join(transcript.split())
    if not transcript:
        raise APIError(422, "transcript: must not be blank", param="transcript", code="invalid_value")
    info = check_clip(data, filename, settings)
    clip = await asyncio.to_thread(decoded_clip, data, info, settings)
    digest = content_hash(clip, transcript)
    existing = await asyncio.to_thread(store.find_content, owner, digest)
    if existing is not None:
        return existing, False
    taken = await asyncio.to_thread(store.find, owner, name)
    if taken is not None and taken.name == name:
        raise _name_taken(taken)
    codes = await triton.encode_voice(clip)
    if codes.ndim != 2 or codes.shape[0] != TOKENS_PER_FRAME or codes.shape[1] < 1:
        raise APIError(502, f"the codec encoder returned codes of shape {list(codes.shape)}", type="server_error",
                       code="upstream_error")
    try:
        return await asyncio.to_thread(store.add, owner, name, transcript, digest, codes, clip,
                                       settings.speech_sample_rate)
    except vs.NameTaken as taken:
        raise _name_taken(taken.voice) from None


def _name_taken(voice: vs.Voice) -> APIError:
    return APIError(409, f"name: a voice named {voice.name!r} exists already ({voice.id})", param="name",
                    code="voice_name_taken")


async def speech_fields(voice: str | None, store: vs.VoiceStore, settings: Settings, owner: str) -> dict:
    """SpeechRequest fields for a request's voice: `voice`, or `reference_text` + `reference_codes`."""
    voice = settings.speech_default_voice if voice is None else voice
    speaker = builtin_speaker(settings, voice)
    if speaker is not None:
        return {"voice": speaker}
    stored = await asyncio.to_thread(store.find, owner, voice)
    try:
        codes = None if stored is None else await asyncio.to_thread(store.codes, stored.id)
    except KeyError:  # deleted meanwhile
        codes = None
    if codes is None:
        raise APIError(422, f"voice: unknown voice {voice!r}; use a built-in voice "
                            f"({', '.join(settings.speech_voices)}), an OpenAI voice name, or the id or name of a "
                            "stored voice (GET /v1/audio/voices)", param="voice", code="voice_not_found")
    return {"reference_text": stored.transcript, "reference_codes": codes}
