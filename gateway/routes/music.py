"""POST /v1/audio/music: text to music, streamed as it is generated.

The body's schema comes from the music model's config (gateway/schemas.py `Bodies`), so the router is
made for the bodies of the moment (gateway/main.py installs it again when they change).
"""

from fastapi import APIRouter, Request
from fastapi.responses import Response

from tritone.gateway.audio_encoding import encoded_rate
from tritone.gateway.auth import ClientKey
from tritone.gateway.generation import open_for_client
from tritone.gateway.schemas import ERROR_RESPONSES, Bodies
from tritone.gateway.streaming import respond, whole_file

AUDIO_TYPES = {"audio/wav": {}, "audio/flac": {}, "audio/mpeg": {}, "audio/ogg": {}, "audio/pcm": {},
               "text/event-stream": {}}


def router(bodies: Bodies) -> APIRouter:
    routes = APIRouter(tags=["music"])
    MusicBody = bodies.music  # noqa: N806 - a class

    @routes.post(
        "/v1/audio/music",
        response_class=Response,
        responses={200: {"content": AUDIO_TYPES, "description": "Audio in response_format, or SSE events"},
                   **ERROR_RESPONSES},
        summary="Generate music from a text prompt",
    )
    async def create_music(body: MusicBody, key: ClientKey, request: Request):
        model = request.app.state.settings.music_model
        generation, finish = await open_for_client(request, key, model, body.to_request())
        rate = generation.sample_rate
        headers = {"X-Sample-Rate": str(encoded_rate(body.response_format, rate))}
        audio = (chunk.audio async for chunk in generation.chunks())
        if not body.stream:
            return await whole_file(audio, body.response_format, rate, finish, headers)
        return respond(audio, body.response_format, rate, finish, request.app.state.metrics,
                       sse_kind="music" if body.stream_format == "sse" else None, headers=headers,
                       usage=generation.usage)

    return routes
