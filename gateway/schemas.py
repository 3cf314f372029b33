"""Request and response bodies. Every limit is in the schema, so /docs shows it and bad input is a 422.

Numbers are strict where OpenAI's API is: a string or a boolean is not a number (a seed may be an
integer string, which keeps its precision past 2^53 in JavaScript), and NaN or infinity is refused
as not finite. Text must hold something visible: NUL, control and zero-width characters alone are not a
prompt.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from tritone.client import MusicRequest
from tritone.ensemble import tensors as T

AudioFormat = Literal["wav", "flac", "mp3", "opus", "pcm"]
SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]  # OpenAI's list and order
SPEECH_MODEL_ALIASES = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")  # OpenAI's names, all served by orpheus


# Triton's tensor names -> the API field each route fills them from (Triton's refusals name the tensor)
MUSIC_FIELDS = {T.TEXT: "prompt"}
SPEECH_FIELDS = {T.TEXT: "input", T.VOICE: "voice", T.REFERENCE_TEXT: "voice", T.REFERENCE_CODES: "voice"}
TRITON_FIELDS = {"/v1/audio/music": MUSIC_FIELDS, "/v1/audio/speech": SPEECH_FIELDS, "/v1/jobs": MUSIC_FIELDS}
INVISIBLE = ("C", "Z")  # Unicode categories: control, format (zero-width), unassigned; separators


def not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be blank")
    if all(unicodedata.category(char)[0] in INVISIBLE for char in text):
        raise ValueError("must contain visible text (it holds only control, zero-width or space characters)")
    return text


def not_bool(value):
    """A seed may be an integer or an integer string, but not true or false."""
    if isinstance(value, bool):
        raise ValueError("must be an integer, not a boolean")
    return value


Seed = Annotated[Annotated[int, Field(ge=0, le=2**63 - 1)] | None, BeforeValidator(not_bool),
                 Field(description="Same seed, same audio. Default: random.")]


class GenerationFields(BaseModel):
    """What to generate and how to sample it: shared by streamed requests and jobs."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    prompt: str = Field(min_length=1, max_length=2000, description="What the music should sound like.",
                        examples=["lo-fi piano with rain"])
    temperature: float | None = Field(None, ge=0, le=10, strict=True,
                                      description="Sampling temperature; 0 is greedy. Default 1.")
    top_k: int | None = Field(None, ge=0, le=2048, strict=True,
                              description="Sample among the k likeliest codes; 0 disables. Default 250.")
    top_p: float | None = Field(None, gt=0, le=1, strict=True,
                                description="Nucleus sampling mass; 1 disables. Default 1.")
    guidance_scale: float | None = Field(None, ge=1, le=20, strict=True,
                                         description="Classifier-free guidance; 1 disables. Default 3.")
    seed: Seed = None

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, prompt: str) -> str:
        return not_blank(prompt)


class MusicBody(GenerationFields):
    duration: float = Field(8.0, ge=0.1, le=30, strict=True, description="Seconds of audio to generate.")
    response_format: AudioFormat = Field("wav", description="Audio encoding of the response.")
    stream: bool = Field(True, strict=True, description="Send audio as it is generated (chunked transfer).")
    stream_format: Literal["audio", "sse"] = Field(
        "audio", description="audio: encoded bytes; sse: server-sent events with base64 chunks and a final event.")

    def to_request(self) -> MusicRequest:
        return MusicRequest(text=self.prompt, duration=self.duration, temperature=self.temperature, top_k=self.top_k,
                            top_p=self.top_p, guidance_scale=self.guidance_scale, seed=self.seed)


class VoiceRef(BaseModel):
    """OpenAI's form for a custom voice: {"id": "voice_..."}."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=100)


class SpeechBody(BaseModel):
    """OpenAI's speech request (POST /v1/audio/speech), plus sampling options of its own."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: str = Field("orpheus", max_length=100, description="orpheus, or OpenAI's names for a speech model: "
                                                              + ", ".join(SPEECH_MODEL_ALIASES) + ".")
    input: str = Field(min_length=1, max_length=4096, description="The text to speak. Long text is spoken "
                       "sentence by sentence, without gaps.", examples=["Hello! Nice to meet you."])
    voice: str | VoiceRef | None = Field(
        None, description="A built-in speaker (tara, leah, jess, leo, dan, mia, zac, zoe), an OpenAI voice name "
                          "(alloy, ash, ... map to built-in speakers), or a stored voice's id or name "
                          "(GET /v1/audio/voices). Default: tara.")
    response_format: SpeechFormat = Field("mp3", description="Audio encoding of the response.")
    speed: float = Field(1.0, ge=0.25, le=4.0, strict=True, description="Speaking rate; the pitch is kept.")
    stream_format: Literal["audio", "sse"] = Field(
        "audio", description="audio: encoded bytes; sse: server-sent events (speech.audio.delta, speech.audio.done).")
    instructions: str | None = Field(None, max_length=4096, description="Accepted for compatibility and ignored: "
                                     "the Orpheus checkpoint takes no style instructions.")
    temperature: float | None = Field(None, ge=0, le=10, strict=True,
                                      description="Sampling temperature; 0 is greedy. Default 0.6.")
    top_k: int | None = Field(None, ge=0, le=100_000, strict=True,
                              description="Sample among the k likeliest codes; 0 disables (default).")
    top_p: float | None = Field(None, gt=0, le=1, strict=True, description="Nucleus sampling mass. Default 0.8.")
    repetition_penalty: float | None = Field(None, ge=1, le=3, strict=True, description="1 disables it. Default 1.3.")
    seed: Seed = None

    @field_validator("input")
    @classmethod
    def _input_not_blank(cls, text: str) -> str:
        return not_blank(text)


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


ERROR_RESPONSES = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        401: "Missing API key", 403: "Unknown API key", 422: "Invalid input (names the field)",
        429: "Too many concurrent streams, or the server is at capacity", 503: "Triton unreachable (Retry-After)",
    }.items()
}
