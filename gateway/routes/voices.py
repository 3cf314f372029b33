"""Voices: the built-in speakers and cloned voices, stored (SQLite) so they outlive the gateway.

    GET    /v1/audio/voices         built-in + stored
    POST   /v1/audio/voices         multipart: file (wav, flac, mp3, ogg; 1 to 30 s), name, transcript
    GET    /v1/audio/voices/{id}    one voice (a built-in one by its name)
    DELETE /v1/audio/voices/{id}    a stored voice

With API keys configured a key sees only its own stored voices; without, every client shares them.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse

from tritone.gateway import voices
from tritone.gateway.auth import ClientKey
from tritone.gateway.dependencies import SettingsDep, TritonDep
from tritone.gateway.errors import APIError
from tritone.gateway.schemas import ERROR_RESPONSES
from tritone.gateway.voice_store import VoiceStore

router = APIRouter(tags=["voices"])

UPLOAD_PATH = "/v1/audio/voices"
MULTIPART_OVERHEAD = 64 * 1024  # the form's other fields and boundaries


def _store(request: Request) -> VoiceStore:
    return request.app.state.voices


StoreDep = Annotated[VoiceStore, Depends(_store)]


async def upload_size_guard(request: Request, call_next):
    """Refuse an oversized upload from its Content-Length, before the body is read at all."""
    if request.method == "POST" and request.url.path == UPLOAD_PATH:
        settings = request.app.state.settings
        try:
            length = int(request.headers.get("content-length", "0"))
        except ValueError:
            length = 0
        if length > settings.voice_max_bytes + MULTIPART_OVERHEAD:
            return voices.too_large(length, settings).response()
    return await call_next(request)


def _not_found(voice_id: str) -> APIError:
    return APIError(404, f"voice {voice_id} not found", type="not_found_error", param="voice_id",
                    code="voice_not_found")


@router.get("/v1/audio/voices", summary="Voices: the built-in speakers, then stored (cloned) voices, oldest first")
async def list_voices(key: ClientKey, store: StoreDep, settings: SettingsDep):
    stored = await asyncio.to_thread(store.list, voices.voice_owner(settings, key))
    return {"object": "list", "data": [*voices.builtin_voices(settings), *(voice.to_dict() for voice in stored)]}


@router.post(
    "/v1/audio/voices", status_code=201,
    responses={200: {"description": "This clip and transcript are stored already: that voice"},
               409: {"description": "Another voice has this name"}, 413: {"description": "The file is too large"},
               415: {"description": "Not a WAV, FLAC, MP3 or Ogg file, or the extension disagrees"},
               **ERROR_RESPONSES},
    summary="Clone a voice from a clip of 1 to 30 s and its transcript",
)
async def create_voice(
    key: ClientKey, store: StoreDep, triton: TritonDep, settings: SettingsDep,
    file: Annotated[UploadFile, File(description="The clip: wav, flac, mp3 or ogg (Vorbis, Opus); 1 to 30 s, "
                                                 "at least 16 kHz, mono or stereo")],
    name: Annotated[str, Form(min_length=1, max_length=voices.MAX_NAME_CHARS, description="What to call it")],
    transcript: Annotated[str, Form(min_length=1, max_length=voices.MAX_TRANSCRIPT_CHARS,
                                    description="The words spoken in the clip")],
):
    if file.size is not None:
        voices.check_size(file.size, settings)
    data = await file.read(settings.voice_max_bytes + 1)
    voice, created = await voices.clone(store, triton, settings, voices.voice_owner(settings, key), data=data,
                                        filename=file.filename, name=name, transcript=transcript)
    return JSONResponse(voice.to_dict(), status_code=201 if created else 200,
                        headers={"Location": f"/v1/audio/voices/{voice.id}"})


@router.get("/v1/audio/voices/{voice_id}", responses={404: {"description": "No such voice"}}, summary="A voice")
async def get_voice(voice_id: str, key: ClientKey, store: StoreDep, settings: SettingsDep):
    for builtin in voices.builtin_voices(settings):
        if builtin["id"] == voice_id:
            return builtin
    voice = await asyncio.to_thread(store.find, voices.voice_owner(settings, key), voice_id)
    if voice is None or voice.id != voice_id:
        raise _not_found(voice_id)
    return voice.to_dict()


@router.delete("/v1/audio/voices/{voice_id}", responses={404: {"description": "No such voice"},
                                                         409: {"description": "A built-in voice"}},
               summary="Delete a stored voice")
async def delete_voice(voice_id: str, key: ClientKey, store: StoreDep, settings: SettingsDep):
    if voice_id in settings.speech_voices:
        raise APIError(409, f"voice_id: {voice_id} is a built-in voice; only stored voices can be deleted",
                       param="voice_id", code="voice_builtin")
    if not await asyncio.to_thread(store.delete, voices.voice_owner(settings, key), voice_id):
        raise _not_found(voice_id)
    return {"id": voice_id, "object": "voice.deleted", "deleted": True}
