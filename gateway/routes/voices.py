"""Voices: the built-in speakers and cloned voices, stored (SQLite) so they outlive the gateway.

    GET    /v1/audio/voices         a speech model's built-in speakers + stored voices (?model=, default the first),
                                    with that model's codec and whether its clones need a transcript
    POST   /v1/audio/voices         multipart: file (wav, flac, mp3, ogg; as long as the model's config allows),
                                    name, transcript (for a model that conditions on it: orpheus; chatterbox
                                    needs none), model (whose codec encodes it; default the first); OpenAI's
                                    `audio.voices.create` form too (audio_sample, name, consent; transcript in
                                    extra_body)
    GET    /v1/audio/voices/{id}    one voice (a built-in one by its name)
    DELETE /v1/audio/voices/{id}    a stored voice

With API keys configured a key sees only its own stored voices; without, every client shares them.
The upload's documented clip lengths come from the speech models' configs, so `router` makes the
routes for the facts of the moment (gateway/main.py installs them again when they change).
"""

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse

from tritone.ensemble import tensors as T
from tritone.gateway import voices
from tritone.gateway.auth import ClientKey
from tritone.gateway.dependencies import CatalogDep, SettingsDep, TritonDep
from tritone.gateway.errors import APIError
from tritone.gateway.model_facts import ModelFacts
from tritone.gateway.schemas import ERROR_RESPONSES
from tritone.gateway.settings import Settings
from tritone.gateway.voice_store import VoiceStore

static = APIRouter(tags=["voices"])  # the routes whose schemas no model decides

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


ModelQuery = Annotated[str | None, Query(max_length=100, description="A speech model (or an alias); default: the "
                                                                   "first")]


@static.get("/v1/audio/voices", summary="Voices: a speech model's built-in speakers, then stored (cloned) voices, "
                                        "oldest first")
async def list_voices(key: ClientKey, store: StoreDep, settings: SettingsDep, catalog: CatalogDep,
                      model: ModelQuery = None):
    speaker = await voices.speaker(settings, catalog, model, required=False)
    stored = await asyncio.to_thread(store.list, voices.voice_owner(settings, key))
    data = [*voices.builtin_voices(settings, speaker), *(voice.to_dict() for voice in stored)]
    # `voices`: the same list as Open WebUI and Kokoro-style clients read it ({"voices": [{"id", "name"}]});
    # `model`, `codec`, `transcript_required`: the model listed for, the codec its stored voices must have (a voice's
    # `codec`), and whether cloning for it needs the clip's words (the web page's voice picker and clone form)
    return {"object": "list", "data": data, "voices": [{"id": voice["id"], "name": voice["name"]} for voice in data],
            "model": speaker.name, "codec": speaker.settings.codec_encoder,
            "transcript_required": speaker.needs_transcript}


@static.get("/v1/audio/voices/{voice_id}", responses={404: {"description": "No such voice"}}, summary="A voice")
async def get_voice(voice_id: str, key: ClientKey, store: StoreDep, settings: SettingsDep, catalog: CatalogDep):
    for speaker in voices.known_speakers(settings, catalog):
        for builtin in voices.builtin_voices(settings, speaker):
            if builtin["id"] == voice_id:
                return builtin
    voice = await asyncio.to_thread(store.find, voices.voice_owner(settings, key), voice_id)
    if voice is None or voice.id != voice_id:
        raise _not_found(voice_id)
    return voice.to_dict()


@static.delete("/v1/audio/voices/{voice_id}", responses={404: {"description": "No such voice"},
                                                         409: {"description": "A built-in voice"}},
               summary="Delete a stored voice")
async def delete_voice(voice_id: str, key: ClientKey, store: StoreDep, settings: SettingsDep, catalog: CatalogDep):
    if any(voice_id in speaker.speakers for speaker in voices.known_speakers(settings, catalog)):
        raise APIError(409, f"voice_id: {voice_id} is a built-in voice; only stored voices can be deleted",
                       param="voice_id", code="voice_builtin")
    if not await asyncio.to_thread(store.delete, voices.voice_owner(settings, key), voice_id):
        raise _not_found(voice_id)
    return {"id": voice_id, "object": "voice.deleted", "deleted": True}


def _lengths(model: ModelFacts | None) -> str | None:
    """A model's voice clip lengths, from its config ("<min_reference_s> to <max_reference_s> s")."""
    low, high = (model.number("min_reference_s"), model.number("max_reference_s")) if model else (None, None)
    return f"{low:g} to {high:g} s" if low is not None and high is not None else None


def clip_lengths(settings: Settings, facts: dict[str, ModelFacts]) -> str:
    """The voice clip lengths the speech models take, from their configs."""
    lengths = list(dict.fromkeys(length for name in settings.speech_models if (length := _lengths(facts.get(name)))))
    return " or ".join(lengths) or "as long as the speech model's config allows"


def upload_summary(settings: Settings, facts: dict[str, ModelFacts]) -> str:
    """What a clone needs, from the configs of the speech models Triton serves (all configured ones when none is
    known): the clip's lengths, and its transcript for a model that conditions on it (takes reference_text)."""
    known = [name for name in settings.speech_models if name in facts] or list(settings.speech_models)
    wants = {name: (_lengths(facts.get(name)), name not in facts or facts[name].takes(T.REFERENCE_TEXT))
             for name in known}
    if len(set(wants.values())) == 1:
        ((length, transcript),) = set(wants.values())
        return (f"Clone a voice from a clip of {length or clip_lengths(settings, facts)}"
                + (" and its transcript" if transcript else ""))
    return "Clone a voice from a clip: " + "; ".join(
        f"{name}: {length or 'as its config allows'}" + (" and its transcript" if transcript else "")
        for name, (length, transcript) in wants.items())


def router(facts: dict[str, ModelFacts], settings: Settings) -> APIRouter:
    routes = APIRouter(tags=["voices"])
    lengths = clip_lengths(settings, facts)
    needs_words = ", ".join(name for name in settings.speech_models
                            if name not in facts or facts[name].takes(T.REFERENCE_TEXT)) or "none here"

    @routes.post(
        "/v1/audio/voices", status_code=201,
        responses={200: {"description": "This clip and transcript are stored already: that voice"},
                   409: {"description": "Another voice has this name"}, 413: {"description": "The file is too large"},
                   415: {"description": "Not a WAV, FLAC, MP3 or Ogg file, or the extension disagrees"},
                   **ERROR_RESPONSES},
        summary=upload_summary(settings, facts),
    )
    async def create_voice(
        key: ClientKey, store: StoreDep, triton: TritonDep, settings: SettingsDep, catalog: CatalogDep,
        name: Annotated[str, Form(min_length=1, max_length=voices.MAX_NAME_CHARS, description="What to call it")],
        file: Annotated[UploadFile | None, File(description=f"The clip: wav, flac, mp3 or ogg (Vorbis, Opus); "
                                                            f"{lengths}, at least "
                                                            f"{settings.voice_min_sample_rate // 1000} kHz, mono or "
                                                            "stereo")] = None,
        audio_sample: Annotated[UploadFile | None, File(description="The clip, under the name OpenAI's "
                                                                    "`audio.voices.create` sends it (instead of "
                                                                    "`file`)")] = None,
        transcript: Annotated[str | None, Form(max_length=voices.MAX_TRANSCRIPT_CHARS,
                                               description="The words spoken in the clip: required by a model that "
                                                           f"conditions on them ({needs_words}; with OpenAI's SDK send "
                                                           "extra_body={'transcript': ...}), optional for the others "
                                                           "(kept with the voice)")] = None,
        model: Annotated[str | None, Form(max_length=100, description="The speech model whose codec encodes the "
                                                                      "clip (the voice serves the models of that "
                                                                      "codec); default: the first")] = None,
        consent: Annotated[str | None, Form(max_length=200, description="OpenAI's consent recording id: accepted "
                                                                        "and not checked (tritone keeps no consent "
                                                                        "recordings)")] = None,
        type: Annotated[str, Form(description="audio_sample (the only kind: a voice from a text prompt is not "
                                              "served)")] = "audio_sample",
    ):
        if type != "audio_sample":
            raise APIError(400, f"type: {type!r} is not served; only audio_sample (a clip and its transcript) "
                                "makes a voice here", param="type", code="invalid_value")
        if (file is None) == (audio_sample is None):
            raise APIError(400, "file: send the clip once, as file or as audio_sample", param="file",
                           code="missing_field" if file is None else "invalid_value")
        clip = file or audio_sample
        if clip.size is not None:
            voices.check_size(clip.size, settings)
        data = await clip.read(settings.voice_max_bytes + 1)
        voice, created = await voices.clone(store, triton, catalog, settings, voices.voice_owner(settings, key),
                                            data=data, filename=clip.filename, name=name, transcript=transcript,
                                            model=model)
        return JSONResponse(voice.to_dict(), status_code=201 if created else 200,
                            headers={"Location": f"/v1/audio/voices/{voice.id}"})

    routes.include_router(static)
    return routes
