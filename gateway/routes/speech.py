"""POST /v1/audio/speech: OpenAI's text-to-speech request, spoken by `orpheus` as it is generated.

The input is split into sentences, each one `orpheus` stream, the next opened while the current
one plays, concatenated in order (client.speech.stream_speech); a client that goes away cancels
every open stream. `speed` is applied to the stream with a pitch-preserving time stretch
(gateway/tempo.py). `instructions` is accepted and ignored: the checkpoint takes no style prompt.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response

from tritone.client import SpeechRequest
from tritone.gateway import voices
from tritone.gateway.auth import ClientKey
from tritone.gateway.dependencies import SettingsDep
from tritone.gateway.errors import APIError
from tritone.gateway.generation import open_for_client
from tritone.gateway.routes.music import AUDIO_TYPES
from tritone.gateway.schemas import ERROR_RESPONSES, SPEECH_MODEL_ALIASES, SpeechBody, VoiceRef
from tritone.gateway.streaming import respond
from tritone.gateway.tempo import TempoStretch

router = APIRouter(tags=["speech"])


def _check_model(model: str, settings) -> None:
    if model not in (settings.speech_model, *SPEECH_MODEL_ALIASES):
        names = ", ".join((settings.speech_model, *SPEECH_MODEL_ALIASES))
        raise APIError(404, f"model: {model!r} is not a speech model here; use one of {names}", param="model",
                       code="model_not_found")


async def _at_speed(chunks: AsyncIterator[np.ndarray], speed: float, sample_rate: int) -> AsyncIterator[np.ndarray]:
    stretch = TempoStretch(speed, sample_rate)
    async for audio in chunks:
        yield stretch.process(audio)
    yield stretch.finish()


@router.post(
    "/v1/audio/speech",
    response_class=Response,
    responses={200: {"content": {**AUDIO_TYPES, "audio/aac": {}}, "description": "Audio in response_format, or SSE events"},
               404: {"description": "Not a speech model"}, **ERROR_RESPONSES},
    summary="Speak a text (OpenAI's speech API)",
)
async def create_speech(body: SpeechBody, key: ClientKey, settings: SettingsDep, request: Request):
    _check_model(body.model, settings)
    voice = body.voice.id if isinstance(body.voice, VoiceRef) else body.voice
    fields = await voices.speech_fields(voice, request.app.state.voices, settings, voices.voice_owner(settings, key))
    speech = SpeechRequest(text=body.input, temperature=body.temperature, top_k=body.top_k, top_p=body.top_p,
                           repetition_penalty=body.repetition_penalty, seed=body.seed,
                           max_duration=settings.speech_max_sentence_s, **fields)
    generation, finish = await open_for_client(request, key, settings.speech_model, speech)
    rate = generation.sample_rate
    audio = (chunk.audio async for chunk in generation.chunks())
    if body.speed != 1.0:
        audio = _at_speed(audio, body.speed, rate)
    return respond(audio, body.response_format, rate, finish, request.app.state.metrics,
                   sse_kind="speech" if body.stream_format == "sse" else None, headers={"X-Sample-Rate": str(rate)})
