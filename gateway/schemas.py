"""Request and response bodies. Every limit is in the schema, so /docs shows it and bad input is a 400 (OpenAI's status for invalid_request_error).

A model's own limits (a prompt's length, a duration's range, the built-in speakers) are not written
here: `Bodies.build` makes the bodies from the models' facts as Triton serves them (gateway/catalog.py),
and a limit Triton has not told yet is left to Triton, whose refusal names the field all the same.

Numbers are strict where OpenAI's API is: a string or a boolean is not a number (a seed may be an
integer string, which keeps its precision past 2^53 in JavaScript), and NaN or infinity is refused
as not finite. Text must hold something visible: NUL, control and zero-width characters alone are not a
prompt.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag, create_model, field_validator

from tritone.client import MusicRequest
from tritone.ensemble import tensors as T
from tritone.gateway.model_facts import ModelFacts, default_voice, speakers
from tritone.gateway.settings import Settings

AudioFormat = Literal["wav", "flac", "mp3", "opus", "pcm"]
SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]  # OpenAI's list and order
MAX_SPEECH_INPUT_CHARS = 4096  # OpenAI's limit on `input`; the gateway speaks it a sentence at a time
MAX_SPEECH_JOB_CHARS = 500_000  # a speech job's `input`: a book chapter or a long podcast script
DEFAULT_DURATION_S = 8.0


# Triton's tensor names -> the API field each route fills them from (Triton's refusals name the tensor)
MUSIC_FIELDS = {T.TEXT: "prompt"}
SPEECH_FIELDS = {T.TEXT: "input", T.VOICE: "voice", T.REFERENCE_TEXT: "voice", T.REFERENCE_CODES: "voice",
                 T.REFERENCE_AUDIO: "voice"}
# a speech body's sampling options -> the Triton input each fills (of the same name), in the body's order
SPEECH_OPTIONS = {"temperature": T.TEMPERATURE, "top_k": T.TOP_K, "top_p": T.TOP_P,
                  "repetition_penalty": T.REPETITION_PENALTY, "min_p": T.MIN_P, "exaggeration": T.EXAGGERATION,
                  "cfg_weight": T.CFG_WEIGHT, "seed": T.SEED}
TRITON_FIELDS = {"/v1/audio/music": MUSIC_FIELDS, "/v1/audio/speech": SPEECH_FIELDS, "/v1/jobs": MUSIC_FIELDS}
JOB_TYPES = ("music", "speech")  # POST /v1/jobs: the body's `type`
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

    prompt: str = Field(min_length=1, description="What the music should sound like.", examples=["lo-fi piano with rain"])
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
    duration: float = Field(DEFAULT_DURATION_S, strict=True, description="Seconds of audio to generate.")
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


class SpeechFields(BaseModel):
    """What to speak, with which voice, and how to sample it: shared by POST /v1/audio/speech and speech jobs."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: str = Field(max_length=100, description="A speech model.")
    input: str = Field(min_length=1, max_length=MAX_SPEECH_INPUT_CHARS, description="The text to speak. Long text is "
                       "spoken sentence by sentence, without gaps.", examples=["Hello! Nice to meet you."])
    voice: str | VoiceRef | None = Field(
        None, description="A built-in speaker, an OpenAI voice name, or a stored voice's id or name "
                          "(GET /v1/audio/voices).")
    temperature: float | None = Field(None, ge=0, le=10, strict=True,
                                      description="Sampling temperature; 0 is greedy. Default 0.6.")
    top_k: int | None = Field(None, ge=0, le=100_000, strict=True,
                              description="Sample among the k likeliest codes; 0 disables (default).")
    top_p: float | None = Field(None, gt=0, le=1, strict=True, description="Nucleus sampling mass. Default 0.8.")
    repetition_penalty: float | None = Field(None, ge=1, le=3, strict=True, description="1 disables it. Default 1.3.")
    # chatterbox's own: a model that does not take one refuses it (400 unsupported_parameter); their ranges and
    # defaults are the model's config's (Bodies.build), Triton's to check until its config is read
    min_p: float | None = Field(None, strict=True, description="Min-p sampling (chatterbox): tokens less likely than "
                                "min_p times the likeliest are dropped; 0 disables it.")
    exaggeration: float | None = Field(None, strict=True, description="Emotion exaggeration (chatterbox); 0.5 is "
                                       "neutral, higher is more expressive.")
    cfg_weight: float | None = Field(None, strict=True, description="Classifier-free guidance weight (chatterbox); "
                                     "0 disables it, lower for faster speakers or stronger exaggeration.")
    seed: Seed = None

    @field_validator("input")
    @classmethod
    def _input_not_blank(cls, text: str) -> str:
        return not_blank(text)


class SpeechBody(SpeechFields):
    """OpenAI's speech request (POST /v1/audio/speech), plus sampling options of its own."""

    response_format: SpeechFormat = Field("mp3", description="Audio encoding of the response.")
    speed: float = Field(1.0, ge=0.25, le=4.0, strict=True, description="Speaking rate; the pitch is kept.")
    stream: bool = Field(True, strict=True, description="Not OpenAI's (Kokoro-style clients send it): false returns "
                         "one whole file with its exact length once generation ends; true streams it.")
    stream_format: Literal["audio", "sse"] = Field(
        "audio", description="audio: encoded bytes; sse: server-sent events (speech.audio.delta, speech.audio.done).")
    instructions: str | None = Field(None, max_length=MAX_SPEECH_INPUT_CHARS, description="Accepted for "
                                     "compatibility and ignored: the speech models take no style instructions.")


class SpeechJobBody(SpeechFields):
    """A long text spoken as a background job (POST /v1/jobs with type speech): an audiobook chapter, a podcast."""

    type: Literal["speech"] = Field(description="speech: this body; music (the default): a music job.")
    input: str = Field(min_length=1, max_length=MAX_SPEECH_JOB_CHARS, description="The text to speak, spoken sentence "
                       "by sentence; captions give each sentence's times.", examples=["Chapter one. It was a dark "
                                                                                     "and stormy night."])
    response_format: AudioFormat = Field("wav", description="Default encoding of the job's audio download.")


class JobBody(GenerationFields):
    type: Literal["music"] = Field("music", description="music (this body, the default) or speech (a speech job: "
                                                       "input, voice, model).")
    duration: float = Field(DEFAULT_DURATION_S, strict=True, description="Seconds of audio to generate, up to "
                            "max_job_duration_s; a job longer than the music model's max_duration_s is generated in "
                            "windows, window i with seed + i.")
    response_format: AudioFormat = Field("wav", description="Default encoding of the job's audio download.")


@dataclass(frozen=True)
class Bodies:
    """The request bodies, with the limits the models' configs state (`facts`: model name -> its facts)."""

    music: type[MusicBody]
    job: object  # a music JobBody or a SpeechJobBody, told apart by `type`
    speech: type[SpeechBody]

    @classmethod
    def build(cls, settings: Settings, facts: Mapping[str, ModelFacts]) -> "Bodies":
        music = facts.get(settings.music_model)
        low, high = (music.number("min_duration_s"), music.number("max_duration_s")) if music else (None, None)
        default = DEFAULT_DURATION_S if high is None else min(DEFAULT_DURATION_S, high)
        prompt = (str, Field(min_length=1, max_length=music.integer("max_text_chars") if music else None,
                             description=GenerationFields.model_fields["prompt"].description,
                             examples=GenerationFields.model_fields["prompt"].examples))
        return cls(
            music=_derived(MusicBody, prompt=prompt, duration=(float, Field(
                default, ge=low, le=high, strict=True, description=MusicBody.model_fields["duration"].description))),
            job=Annotated[
                Annotated[_derived(JobBody, prompt=prompt, duration=(float, Field(
                    default, ge=low, strict=True, description=_job_duration_help(settings, high)))), Tag("music")]
                | Annotated[_derived(SpeechJobBody, **_speech_fields(settings, facts)), Tag("speech")],
                Discriminator(_job_type)],
            speech=_derived(SpeechBody, **_speech_fields(settings, facts)),
        )


def _job_type(body) -> str | None:
    """Which job body `body` is: its `type`, music when absent (an unknown type fails as the music body's)."""
    kind = body.get("type", "music") if isinstance(body, dict) else getattr(body, "type", "music")
    return kind if kind in JOB_TYPES else "music"


def _derived(base: type[BaseModel], **fields) -> type:
    """`base` with `fields` redefined (its validators kept), under the same name in /docs."""
    return create_model(base.__name__, __base__=base, __module__=base.__module__, __doc__=base.__doc__, **fields)


def _job_duration_help(settings: Settings, window_s: float | None) -> str:
    beyond = f"{window_s:g} s (the music model's max_duration_s)" if window_s else "the music model's max_duration_s"
    return (f"Seconds of audio to generate, up to {settings.max_job_duration_s:g} (max_job_duration_s); beyond {beyond} "
            "it is generated in windows, window i with seed + i.")


def _speech_fields(settings: Settings, facts: Mapping[str, ModelFacts]) -> dict:
    """`model` (the first speech model by default) and `voice`, described with each model's speakers."""
    models = settings.speech_models
    names = [name + (f" (or {', '.join(model.aliases)})" if model.aliases else "") for name, model in models.items()]
    served = [name for name in models if name in facts] or list(models)  # a model Triton lacks: not described
    speaking = {name: (speakers(models[name], facts.get(name)), default_voice(models[name], facts.get(name)))
                for name in served}
    if len(speaking) == 1:
        ((builtin, default),) = speaking.values()
        listed = f" ({', '.join(builtin)})" if builtin else ""
        defaults = f" Default: {default}." if default else ""
    else:
        listed = " (" + "; ".join(f"{name}: {', '.join(builtin) or 'none'}"
                                  for name, (builtin, _) in speaking.items()) + ")"
        defaults = " Default: " + "; ".join(f"{name}: {default}"
                                            for name, (_, default) in speaking.items() if default) + "."
    aliases = ", ".join(list(settings.speech_voice_aliases)[:2])
    voice_help = (f"A built-in speaker{listed}, an OpenAI voice name ({aliases}, ... map to built-in speakers), or a "
                  f"stored voice's id or name (GET /v1/audio/voices).{defaults}")
    first = next(iter(models), None)
    model = Field(first, max_length=100, description="The speech model: " + ", ".join(names) + ".") if first else \
        Field(max_length=100, description="No speech model is configured.")
    return {"model": (str, model), "voice": (str | VoiceRef | None, Field(None, description=voice_help)),
            **_option_fields(settings, facts)}


def _option_fields(settings: Settings, facts: Mapping[str, ModelFacts]) -> dict:
    """The sampling options as the speech models' configs state them: each model's range and default for it, and
    which models do not take it (they refuse it); bounds: the widest of the ranges the configs state. An option
    no known model's config speaks of keeps its definition in SpeechFields."""
    known = {name: facts[name] for name in settings.speech_models if name in facts}
    fields = {}
    for field, tensor in SPEECH_OPTIONS.items():
        if field == "seed":  # the API's own bounds (an integer string taken); every model's doc says the same
            continue
        takers = {name: model for name, model in known.items() if model.takes(tensor)}
        docs = {name: model.doc(tensor) for name, model in takers.items() if model.doc(tensor)}
        if not docs:
            continue
        base = SpeechFields.model_fields[field]
        summary = (base.description or "").split(" Default")[0]
        said = " ".join(f"{name}: {doc}." for name, doc in docs.items())
        others = [name for name in known if name not in takers]
        refused = f" Not taken by {', '.join(others)} (refused if sent)." if others else ""
        bounds = [model.bounds(tensor) for model in takers.values()]
        if None in bounds:  # a range some config does not state: the body's own bounds stay
            annotation, limits = Annotated[(base.annotation, *base.metadata)] if base.metadata else base.annotation, {}
        else:
            low, high = ("gt" if all("gt" in b for b in bounds) else "ge"), ("lt" if all("lt" in b for b in bounds)
                                                                           else "le")
            annotation = base.annotation
            limits = {low: min(b.get("ge", b.get("gt")) for b in bounds),
                      high: max(b.get("le", b.get("lt")) for b in bounds)}
        fields[field] = (annotation, Field(None, strict=True, description=f"{summary} {said}{refused}", **limits))
    return fields


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
        400: "Invalid input (names the field), or a body that is not JSON", 401: "Missing or unknown API key",
        403: "A generation key on an admin route",
        429: "Too many concurrent streams, or the server is at capacity", 503: "Triton unreachable (Retry-After)",
    }.items()
}
