"""Models: what Triton has (ready or not; any key), and load/unload through its repository API (an admin key)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request

from tritone.gateway.auth import REQUIRE_ADMIN, REQUIRE_KEY
from tritone.gateway.dependencies import SettingsDep, TritonDep
from tritone.gateway.errors import APIError
from tritone.gateway.model_facts import ModelFacts
from tritone.gateway.schemas import ERROR_RESPONSES, ErrorBody

router = APIRouter(tags=["models"])

# Parameters of the music and speech models' configs worth showing a client.
PUBLIC_PARAMETERS = {"sample_rate": int, "max_duration_s": float, "max_text_chars": int, "max_text_tokens": int,
                     "max_slots": int, "max_queue": int}
# what load and unload can answer besides 200 (401/403 are documented from the route's key, see gateway.auth)
CONTROL_RESPONSES = {404: {"model": ErrorBody, "description": "No such model in the repository"},
                     503: ERROR_RESPONSES[503]}


STARTED = int(time.time())  # OpenAI's `created`: Triton does not say when a model was made; when this gateway started


async def _entries(triton, settings) -> list[dict]:
    """Every model on the Triton server, then each speech model's OpenAI aliases (`parent`: the model)."""
    data = []
    for model in await triton.models():
        entry = {"id": model.name, "object": "model", "created": STARTED, "owned_by": "tritone",
                 "version": model.version, "state": model.state or "UNLOADED", "ready": model.state == "READY",
                 "reason": model.reason}
        if model.name in (settings.music_model, *settings.speech_models) and entry["ready"]:
            parameters = ModelFacts.from_config(model.name, model.version, await triton.config(model.name)).parameters
            entry.update({k: cast(parameters[k]) for k, cast in PUBLIC_PARAMETERS.items() if k in parameters})
        data.append(entry)
    served = {entry["id"]: entry for entry in data}
    for name, speech in settings.speech_models.items():
        if name in served:
            data += [{**served[name], "id": alias, "parent": name} for alias in speech.aliases if alias not in served]
    return data


@router.get("/v1/models", dependencies=[REQUIRE_KEY],
            summary="Models on the Triton server, ready or not, with the pipelines' limits, and their OpenAI aliases")
async def list_models(triton: TritonDep, settings: SettingsDep):
    return {"object": "list", "data": await _entries(triton, settings)}


@router.get("/v1/models/{model_id}", dependencies=[REQUIRE_KEY],
            responses={404: {"model": ErrorBody, "description": "No such model or alias"}},
            summary="One model or alias, as in the list (OpenAI's models.retrieve)")
async def retrieve_model(model_id: str, triton: TritonDep, settings: SettingsDep):
    for entry in await _entries(triton, settings):
        if entry["id"] == model_id:
            return entry
    raise APIError(404, f"model: {model_id!r} is not a model here", type="invalid_request_error", param="model",
                   code="model_not_found")


@router.get("/v1/audio/models", dependencies=[REQUIRE_KEY],
            summary="The speech models Triton's repository holds and their aliases, as Open WebUI lists TTS models "
                    "({\"models\": [{\"id\"}]})")
async def list_speech_models(settings: SettingsDep, request: Request):
    served = await request.app.state.models.held(settings.speech_models)
    names = [name for name in served for name in (name, *settings.speech_models[name].aliases)]
    return {"models": [{"id": name} for name in names]}


async def _known(triton, name: str) -> None:
    if name not in {model.name for model in await triton.models()}:
        raise APIError(404, f"no model named {name!r} in the repository", type="not_found_error", param="name",
                       code="model_not_found")


@router.post("/v1/models/{name}/load", dependencies=[REQUIRE_ADMIN], responses=CONTROL_RESPONSES,
             summary="Load a model (explicit model control; an admin key)")
async def load_model(name: str, triton: TritonDep, request: Request):
    await _known(triton, name)
    await triton.load(name)
    request.app.state.models.touch(name)
    await request.app.state.catalog.refresh((name,))  # a new version or config: new limits
    return {"id": name, "ready": await triton.model_ready(name)}


@router.post("/v1/models/{name}/unload", dependencies=[REQUIRE_ADMIN], responses=CONTROL_RESPONSES,
             summary="Unload a model (explicit model control; an admin key)")
async def unload_model(name: str, triton: TritonDep):
    await _known(triton, name)
    await triton.unload(name)
    return {"id": name, "ready": await triton.model_ready(name)}
