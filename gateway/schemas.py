"""Request and response bodies. Every limit is in the schema, so /docs shows it and bad input is a 422."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from client import MusicRequest

AudioFormat = Literal["wav", "flac", "mp3", "opus", "pcm"]


class GenerationFields(BaseModel):
    """What to generate and how to sample it: shared by streamed requests and jobs."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=2000, description="What the music should sound like.",
                        examples=["lo-fi piano with rain"])
    temperature: float | None = Field(None, ge=0, le=10, description="Sampling temperature; 0 is greedy. Default 1.")
    top_k: int | None = Field(None, ge=0, le=2048, description="Sample among the k likeliest codes; 0 disables. Default 250.")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling mass; 1 disables. Default 1.")
    guidance_scale: float | None = Field(None, ge=1, le=20, description="Classifier-free guidance; 1 disables. Default 3.")
    seed: int | None = Field(None, ge=0, le=2**63 - 1, description="Same seed, same audio. Default: random.")

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, prompt: str) -> str:
        if not prompt.strip():
            raise ValueError("must not be blank")
        return prompt


class MusicBody(GenerationFields):
    duration: float = Field(8.0, ge=0.1, le=30, description="Seconds of audio to generate.")
    response_format: AudioFormat = Field("wav", description="Audio encoding of the response.")
    stream: bool = Field(True, description="Send audio as it is generated (chunked transfer).")
    stream_format: Literal["audio", "sse"] = Field(
        "audio", description="audio: encoded bytes; sse: server-sent events with base64 chunks and a final event.")

    def to_request(self) -> MusicRequest:
        return MusicRequest(text=self.prompt, duration=self.duration, temperature=self.temperature, top_k=self.top_k,
                            top_p=self.top_p, guidance_scale=self.guidance_scale, seed=self.seed)


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
