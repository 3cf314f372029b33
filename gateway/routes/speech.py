"""POST /v1/audio/speech: OpenAI's text-to-speech request, spoken by the speech model it names as it is generated.

The input is split into sentences, each one stream of the model, the next opened while the current
one plays, concatenated in order (client.speech.stream_speech); a client that goes away cancels
every open stream. `speed` is applied to the stream with a pitch-preserving time stretch
(gateway/tempo.py). `instructions` is accepted and ignored: the models take no style prompt. A model's own
sampling options (chatterbox's exaggeration, cfg_weight, min_p) sent to a model that does not take them are
refused naming the field (gateway/speech_options.py).
The body's schema comes from the models' configs (gateway/schemas.py `Bodies`), so the router is
made for the bodies of the moment (gateway/main.py installs it again when they change).
"""

from collections.abc import AsyncIterator

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response

from tritone.gateway.audio_encoding import encoded_rate
from tritone.gateway import speech_options, voices
from tritone.gateway.auth import ClientKey
from tritone.gateway.captions import StreamCaptions
from tritone.gateway.dependencies import CatalogDep, SettingsDep
from tritone.gateway.generation import open_for_client
from tritone.gateway.routes.music import AUDIO_TYPES
from tritone.gateway.schemas import ERROR_RESPONSES, Bodies, ErrorBody, VoiceRef
from tritone.gateway.streaming import respond, whole_file
from tritone.gateway.tempo import TempoStretch


async def _at_speed(chunks: AsyncIterator[np.ndarray], speed: float, sample_rate: int) -> AsyncIterator[np.ndarray]:
    stretch = TempoStretch(speed, sample_rate)
    async for audio in chunks:
        yield stretch.process(audio)
    yield stretch.finish()


def router(bodies: Bodies) -> APIRouter:
    routes = APIRouter(tags=["speech"])
    SpeechBody = bodies.speech  # noqa: N806 - a class

    @routes.post(
        "/v1/audio/speech",
        response_class=Response,
        responses={200: {"content": {**AUDIO_TYPES, "audio/aac": {}},
                         "description": "Audio in response_format, or SSE events"},
                   404: {"description": "Not a speech model"},
                   422: {"model": ErrorBody, "description": "A stored voice of another codec than the model's "
                                                            "(voice_codec_mismatch)"}, **ERROR_RESPONSES},
        summary="Speak a text (OpenAI's speech API)",
    )
    async def create_speech(body: SpeechBody, key: ClientKey, settings: SettingsDep, catalog: CatalogDep,
                            request: Request):
        model = await voices.speaker(settings, catalog, body.model)
        values = body.model_dump()
        speech_options.check_taken(model.name, model.facts, values, catalog.facts, settings.speech_models)
        voice = body.voice.id if isinstance(body.voice, VoiceRef) else body.voice
        fields = await voices.speech_fields(voice, request.app.state.voices, settings, catalog, model,
                                            voices.voice_owner(settings, key))
        speech = speech_options.speech_request(body.input, values, settings.speech_max_sentence_s, fields)
        generation, finish = await open_for_client(request, key, model.name, speech)
        rate = generation.sample_rate
        captions = StreamCaptions(rate, body.input, body.speed)
        audio = captions.follow(generation.chunks())
        if body.speed != 1.0:
            audio = _at_speed(audio, body.speed, rate)
        headers = {"X-Sample-Rate": str(encoded_rate(body.response_format, rate))}
        if not body.stream:
            return await whole_file(audio, body.response_format, rate, finish, headers)
        return respond(audio, body.response_format, rate, finish, request.app.state.metrics,
                       sse_kind="speech" if body.stream_format == "sse" else None, headers=headers,
                       usage=generation.usage, captions=captions.take)

    return routes
