"""Voices for speech: built-in speakers, OpenAI's names for them, and cloned voices.

A request's voice is resolved, for the speech model it names, in this order: a built-in speaker
(the speakers the checkpoint was fine-tuned on, as the model's config lists them: sent as `voice`),
an OpenAI voice name (`speech_voice_aliases`, a table mapping each to a built-in speaker), then a
stored voice by id or name, if the model's codec encoder (and its version) made its codes (codes mean
nothing to another codec: 422 otherwise). A stored voice is sent as its model's config asks: a model
that takes `reference_codes` (Orpheus) gets its codes and transcript (`reference_codes` +
`reference_text`), one that takes only `reference_audio` (Chatterbox) gets its stored clip, which the
pipeline turns into the voice's conditioning once and caches by content.

Cloning checks the upload from its headers first (gateway/audio_probe.py: size, format and
extension, duration, sample rate, channels), then decodes it to mono at the codec's rate within a
budget of samples actually decoded (a header that understates the length cannot make it decode an
hour), and only then, when no stored voice has the same content for this codec, encodes it once
through the model's codec encoder, storing its output `codes_output` (settings) as the voice's codes.
The clip's length limits and rate are the model's (`min_reference_s`, `max_reference_s`, `sample_rate`
in its config); a transcript is required by a model that takes `reference_text` (it conditions on it)
and is otherwise optional (kept with the voice, not sent).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass

import numpy as np

from tritone.ensemble import tensors as T
from tritone.gateway import voice_store as vs
from tritone.gateway.audio_probe import ClipInfo, ClipTooLong, ProbeError, decode_within, probe
from tritone.gateway.catalog import ModelCatalog
from tritone.gateway.errors import APIError
from tritone.gateway.model_facts import ModelFacts, default_voice, speakers
from tritone.gateway.settings import Settings, SpeechModel
from tritone.gateway.triton import Triton

MAX_NAME_CHARS = 64
MAX_TRANSCRIPT_CHARS = 1000
DECODE_MARGIN_S = 0.5  # decoded audio may exceed the longest clip by a decoder's padding, not more


def voice_owner(settings: Settings, key: str) -> str:
    """Whose voices a caller sees: its API key's; everyone shares them when the gateway has no keys."""
    return key if settings.api_keys else ""


@dataclass(frozen=True)
class Speaker:
    """A speech model as a request uses it: its gateway settings and its facts from Triton."""

    name: str
    settings: SpeechModel
    facts: ModelFacts | None

    @property
    def speakers(self) -> tuple[str, ...]:
        return speakers(self.settings, self.facts)

    @property
    def default_voice(self) -> str | None:
        return default_voice(self.settings, self.facts)

    @property
    def needs_transcript(self) -> bool:
        """Whether its voices condition on the clip's words (it takes reference_text)."""
        return self.facts is None or self.facts.takes(T.REFERENCE_TEXT)

    @property
    def speaks_codes(self) -> bool:
        """Whether a stored voice is sent as its codes (reference_codes), else as its clip (reference_audio)."""
        return self.facts is None or self.facts.takes(T.REFERENCE_CODES)


DATED = re.compile(r"-\d{4}-\d{2}-\d{2}$")


def speech_model_name(settings: Settings, model: str | None) -> str:
    """The speech model a request's `model` names (itself or an alias); the first one when it names none."""
    undated = DATED.sub("", model) if model else model  # a dated snapshot names its alias
    for name, speech in settings.speech_models.items():
        if model is None or model == name or model in speech.aliases or undated in speech.aliases:
            return name
    names = ", ".join(alias for name, speech in settings.speech_models.items() for alias in (name, *speech.aliases))
    names = names or "none (no speech model is configured)"
    raise APIError(404, f"model: {model!r} is not a speech model here; use one of {names}", param="model",
                   code="model_not_found")


async def speaker(settings: Settings, catalog: ModelCatalog, model: str | None, required: bool = True) -> Speaker:
    """The speech model `model` names, with its facts (`required`: 503 when Triton cannot tell them; else None)."""
    name = speech_model_name(settings, model)
    facts = await catalog.get(name) if required else await catalog.find(name)
    return Speaker(name, settings.speech_models[name], facts)


def known_speakers(settings: Settings, catalog: ModelCatalog) -> list[Speaker]:
    """Every speech model, with the facts known so far."""
    return [Speaker(name, speech, catalog.facts.get(name)) for name, speech in settings.speech_models.items()]


def builtin_speaker(settings: Settings, model: Speaker, voice: str) -> str | None:
    """The built-in speaker of `model` that `voice` names (itself or through an OpenAI name), or None."""
    name = voice.strip().lower()
    if name in model.speakers:
        return name
    alias = settings.speech_voice_aliases.get(name)
    return alias if alias in model.speakers else None


def builtin_voices(settings: Settings, model: Speaker) -> list[dict]:
    aliases = settings.speech_voice_aliases
    return [{"id": name, "object": "audio.voice", "type": "builtin", "name": name,
             "aliases": sorted(alias for alias, speaker in aliases.items() if speaker == name)}
            for name in model.speakers]


def is_builtin(settings: Settings, catalog: ModelCatalog, voice: str) -> bool:
    """Whether `voice` names a built-in voice of any speech model."""
    return any(builtin_speaker(settings, model, voice) is not None for model in known_speakers(settings, catalog))


@dataclass(frozen=True)
class ClipLimits:
    """What a speech model takes as a voice clip, from its config."""

    rate: int
    low: float  # seconds
    high: float

    @classmethod
    def of(cls, model: Speaker) -> "ClipLimits":
        facts = model.facts
        values = [facts.integer("sample_rate"), facts.number("min_reference_s"), facts.number("max_reference_s")] \
            if facts is not None else [None] * 3
        if None in values:
            raise APIError(500, f"the config of {model.name} does not state sample_rate, min_reference_s and "
                                "max_reference_s: it cannot clone voices", type="server_error", code="model_config")
        return cls(*values)


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


def check_clip(data: bytes, filename: str | None, settings: Settings, limits: ClipLimits) -> ClipInfo:
    """Everything that can be refused from the bytes' headers, before any decoding."""
    check_size(len(data), settings)
    try:
        info = probe(data, filename)
    except ProbeError as error:
        raise _bad_file(error.status, str(error)) from None
    if not 1 <= info.channels <= 2:
        raise _bad_file(400, f"the clip has {info.channels} channels; a voice clip must be mono or stereo")
    if info.sample_rate < settings.voice_min_sample_rate:
        raise _bad_file(400, f"the clip is sampled at {info.sample_rate} Hz; a voice clip needs at least "
                             f"{settings.voice_min_sample_rate} Hz")
    low, high = limits.low, limits.high
    if not low <= info.duration <= high:
        raise _bad_file(400, f"the clip lasts {info.duration:.2f} s; a voice clip must last {low:g} to {high:g} s")
    return info


def decoded_clip(data: bytes, info: ClipInfo, limits: ClipLimits) -> np.ndarray:
    """The clip at the codec's rate, mono, within the longest clip: decoding stops beyond it."""
    rate, low, high = limits.rate, limits.low, limits.high
    try:
        clip = decode_within(data, rate, high + DECODE_MARGIN_S)
    except ClipTooLong as error:
        raise _bad_file(400, f"{error}, though its header says {info.duration:.2f} s; a voice clip must last "
                             f"{low:g} to {high:g} s") from None
    except ProbeError as error:
        raise _bad_file(error.status, str(error)) from None
    clip = clip[:int(high * rate)]  # a decoder's padding, not more audio
    if len(clip) < low * rate * 0.95:
        raise _bad_file(400, f"the clip decodes to {len(clip) / rate:.2f} s of audio; a voice clip must last "
                             f"{low:g} to {high:g} s")
    return clip


def check_name(name: str, settings: Settings, catalog: ModelCatalog) -> str:
    name = name.strip()
    if not name:
        raise APIError(400, "name: must not be blank", param="name", code="invalid_value")
    if is_builtin(settings, catalog, name) or name.lower().startswith("voice_"):
        raise APIError(400, f"name: {name!r} is taken by a built-in voice or looks like a voice id; choose another",
                       param="name", code="invalid_value")
    return name


def content_hash(clip: np.ndarray, transcript: str) -> str:
    return hashlib.sha256(np.ascontiguousarray(clip, np.float32).tobytes() + b"\0" + transcript.encode()).hexdigest()


async def codec_of(model: Speaker, catalog: ModelCatalog) -> tuple[str, str]:
    """(encoder, version): the codec whose codes `model` speaks from."""
    encoder = model.settings.codec_encoder
    return encoder, (await catalog.get(encoder)).version


def check_transcript(model: Speaker, transcript: str | None) -> str:
    """The transcript, whitespace normalized; required (not blank) by a model that conditions on it, else optional."""
    if not transcript:  # absent, or an empty form field
        if model.needs_transcript:
            raise APIError(400, "transcript: required, the words spoken in the clip (cloning conditions on them; "
                                "with OpenAI's SDK pass extra_body={'transcript': ...})",
                           param="transcript", code="missing_field")
        return ""
    transcript = " ".join(transcript.split())
    if not transcript and model.needs_transcript:
        raise APIError(400, "transcript: must not be blank", param="transcript", code="invalid_value")
    return transcript


async def clone(store: vs.VoiceStore, triton: Triton, catalog: ModelCatalog, settings: Settings, owner: str, *,
                data: bytes, filename: str | None, name: str, transcript: str | None,
                model: str | None = None) -> tuple[vs.Voice, bool]:
    """(voice, created): validate, decode, and encode the clip with `model`'s codec unless this content is stored
    already for it. The content is the clip and, for a model that conditions on it, the transcript."""
    speech = await speaker(settings, catalog, model)
    transcript = check_transcript(speech, transcript)
    name = check_name(name, settings, catalog)
    limits = ClipLimits.of(speech)
    info = check_clip(data, filename, settings, limits)
    clip = await asyncio.to_thread(decoded_clip, data, info, limits)
    digest = content_hash(clip, transcript if speech.needs_transcript else "")
    codec = await codec_of(speech, catalog)
    existing = await asyncio.to_thread(store.find_content, owner, digest, codec)
    if existing is not None:
        return existing, False
    taken = await asyncio.to_thread(store.find, owner, name)
    if taken is not None and taken.name == name:
        raise _name_taken(taken)
    output = speech.settings.codes_output
    dims = catalog.facts[codec[0]].outputs.get(output)
    if dims is None:
        raise APIError(500, f"{codec[0]} has no output {output!r} (the codes_output of {speech.name}'s settings)",
                       type="server_error", code="model_config")
    codes = await triton.encode_voice(codec[0], clip, output)
    codes = codes[None] if codes.ndim == 1 else codes  # one row of tokens: [1, frames]
    rows = dims[0] if len(dims) == 2 else 1
    if codes.ndim != 2 or codes.shape[0] != rows > 0 or codes.shape[1] < 1:
        raise APIError(502, f"the codec encoder returned codes of shape {list(codes.shape)}", type="server_error",
                       code="upstream_error")
    try:
        return await asyncio.to_thread(store.add, owner, name, transcript, digest, codes, clip, limits.rate, codec)
    except vs.NameTaken as taken:
        raise _name_taken(taken.voice) from None


def _name_taken(voice: vs.Voice) -> APIError:
    return APIError(409, f"name: a voice named {voice.name!r} exists already ({voice.id})", param="name",
                    code="voice_name_taken")


async def speech_fields(voice: str | None, store: vs.VoiceStore, settings: Settings, catalog: ModelCatalog,
                        model: Speaker, owner: str) -> dict:
    """SpeechRequest fields for a request's voice: `voice`, `reference_text` + `reference_codes` (a stored voice, for
    a model that takes codes), or `reference_audio` (a stored voice's clip, for a model that takes only a clip)."""
    voice = model.default_voice if voice is None else voice
    if voice is None:
        raise APIError(400, f"voice: {model.name} has no built-in speaker; name a stored voice (GET /v1/audio/voices)",
                       param="voice", code="voice_not_found")
    builtin = builtin_speaker(settings, model, voice)
    if builtin is not None:
        return {"voice": builtin}
    stored = await asyncio.to_thread(store.find, owner, voice)
    if stored is not None:
        codec = await codec_of(model, catalog)
        if (stored.codec, stored.codec_version) != codec:  # 422: a well-formed request this model cannot serve
            raise APIError(422, f"voice: {stored.name!r} ({stored.id}) holds codes of codec {stored.codec} version "
                                f"{stored.codec_version}, but {model.name} speaks from codec {codec[0]} version "
                                f"{codec[1]}; clone the voice again for {model.name} (POST /v1/audio/voices with "
                                f"model={model.name})", param="voice", code="voice_codec_mismatch")
        try:
            if model.speaks_codes:
                return {"reference_text": stored.transcript,
                        "reference_codes": await asyncio.to_thread(store.codes, stored.id)}
            clip, _ = await asyncio.to_thread(store.clip, stored.id)  # at the codec's rate: the same codec made it
            return {"reference_audio": clip}
        except KeyError:  # deleted meanwhile
            pass
    aliases = any(speaker in model.speakers for speaker in settings.speech_voice_aliases.values())
    raise APIError(400, f"voice: unknown voice {voice!r}; use a built-in voice "
                        f"({', '.join(model.speakers) or 'none'}), {'an OpenAI voice name, ' if aliases else ''}or the "
                        "id or name of a stored voice (GET /v1/audio/voices)", param="voice", code="voice_not_found")
