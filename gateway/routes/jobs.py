"""Jobs: long generations run in the background, polled, cancelled and downloaded.

    POST /v1/jobs                  submit (202 + Location; Idempotency-Key makes retries safe)
    GET  /v1/jobs                  newest first
    GET  /v1/jobs/{id}             status, queue position, progress, ETA
    POST   /v1/jobs/{id}/cancel    stops the gRPC stream of a running job
    GET    /v1/jobs/{id}/audio     the result, encoded on the fly (?format=wav|flac|mp3|opus|pcm)
    GET    /v1/jobs/{id}/captions  a speech job's sentence captions (?format=vtt|srt|json)
    DELETE /v1/jobs/{id}           the job and its audio (a running job is cancelled first)

With API keys configured a key sees only its own jobs; without them every client sees all jobs.
Finished jobs expire after `job_ttl_s`; a job that would pass the disk budget is refused with 507.
A job is music (`type` music, the default: prompt and duration) or speech (`type` speech: input, up to
500,000 characters, voice, model). The submitted body's schema comes from the models' configs (gateway/schemas.py `Bodies`), so
`router` makes the routes for the bodies of the moment (gateway/main.py installs them again when they change).
"""

import asyncio
import json
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response

from tritone.gateway import job_store as js
from tritone.gateway.audio_encoding import content_type, encode_audio, encoded_rate
from tritone.gateway.auth import ClientKey
from tritone.gateway.errors import APIError
from tritone.gateway.job_runner import JobRunner
from tritone.gateway.job_store import JobStore
from tritone.gateway import speech_options, voices
from tritone.gateway.captions import FORMATS as CAPTION_FORMATS, MEDIA_TYPES as CAPTION_TYPES
from tritone.gateway.job_runner import speech_seconds_bound
from tritone.gateway.schemas import ERROR_RESPONSES, AudioFormat, Bodies, VoiceRef

static = APIRouter(tags=["jobs"])  # the routes whose schemas no model decides

QUEUE_FULL_RETRY_AFTER_S = "10"
EXTENSIONS = {"wav": "wav", "flac": "flac", "mp3": "mp3", "opus": "ogg", "pcm": "pcm"}


def _store(request: Request) -> JobStore:
    return request.app.state.jobs


def _runner(request: Request) -> JobRunner:
    return request.app.state.job_runner


StoreDep = Annotated[JobStore, Depends(_store)]
RunnerDep = Annotated[JobRunner, Depends(_runner)]


def _owner(request: Request, key: str) -> str | None:
    """Whose jobs a caller may see: its API key's, or everyone's when the gateway has no keys."""
    return key if request.app.state.settings.api_keys else None


def _not_found(job_id: str) -> APIError:
    return APIError(404, f"job {job_id} not found", type="not_found_error", param="job_id", code="job_not_found")


async def _job(store: JobStore, job_id: str, owner: str | None) -> js.Job:
    job = await asyncio.to_thread(store.get, job_id, owner)
    if job is None:
        raise _not_found(job_id)
    return job


def _storage_limits(settings) -> js.StorageLimits:
    return js.StorageLimits(budget_bytes=settings.job_disk_budget_bytes, min_free_bytes=settings.job_min_free_bytes)


def _job_response(job: js.Job, status: int) -> JSONResponse:
    return JSONResponse(job.to_dict(), status_code=status, headers={"Location": f"/v1/jobs/{job.id}"})


@static.get("/v1/jobs", summary="List jobs, newest first")
async def list_jobs(key: ClientKey, store: StoreDep, request: Request,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100):
    jobs = await asyncio.to_thread(store.list, _owner(request, key), limit)
    return {"object": "list", "data": [job.to_dict() for job in jobs]}


@static.get("/v1/jobs/{job_id}", responses={404: {"description": "No such job"}}, summary="A job's status")
async def get_job(job_id: str, key: ClientKey, store: StoreDep, request: Request):
    return (await _job(store, job_id, _owner(request, key))).to_dict()


@static.post("/v1/jobs/{job_id}/cancel", responses={404: {"description": "No such job"},
                                                    409: {"description": "The job already ended"}},
             summary="Cancel a queued or running job")
async def cancel_job(job_id: str, key: ClientKey, store: StoreDep, runner: RunnerDep, request: Request):
    try:
        return (await _cancel(store, runner, job_id, _owner(request, key))).to_dict()
    except js.JobNotFound:
        raise _not_found(job_id) from None
    except js.JobFinished as finished:
        raise APIError(409, f"job {job_id} is already {finished.job.status}", param="job_id",
                       code="job_finished") from None


async def _cancel(store: JobStore, runner: JobRunner, job_id: str, owner: str | None) -> js.Job:
    """Cancel a queued or running job; returns once a running job's gRPC stream is closed."""
    job, before = await asyncio.to_thread(store.cancel, job_id, owner)
    if before == js.RUNNING:
        await runner.cancel(job_id)
    else:
        await runner.refresh_gauge()
    return job


@static.delete("/v1/jobs/{job_id}", responses={404: {"description": "No such job"}},
               summary="Delete a job and its audio (a queued or running job is cancelled first)")
async def delete_job(job_id: str, key: ClientKey, store: StoreDep, runner: RunnerDep, request: Request):
    owner = _owner(request, key)
    try:
        await _cancel(store, runner, job_id, owner)
    except js.JobNotFound:
        raise _not_found(job_id) from None
    except js.JobFinished:
        pass  # it has ended: nothing to stop
    if not await asyncio.to_thread(store.delete, job_id, owner):
        raise _not_found(job_id)  # deleted meanwhile
    return {"id": job_id, "object": "job.deleted", "deleted": True}


@static.get("/v1/jobs/{job_id}/audio", response_class=Response,
            responses={200: {"content": {"audio/wav": {}, "audio/flac": {}, "audio/mpeg": {}, "audio/ogg": {},
                                         "audio/L16": {}}, "description": "The job's audio"},
                       404: {"description": "No such job"}, 409: {"description": "The job has not succeeded"}},
            summary="Download a succeeded job's audio")
async def job_audio(job_id: str, key: ClientKey, store: StoreDep, request: Request,
                    format: Annotated[AudioFormat | None,
                                      Query(description="Default: the job's response_format")] = None):
    job = await _job(store, job_id, _owner(request, key))
    if job.status != js.SUCCEEDED:
        raise APIError(409, f"job {job_id} is {job.status}; its audio is available once it has succeeded",
                       param="job_id", code="job_not_succeeded")
    fmt = format or job.response_format
    stored = await asyncio.to_thread(store.audio, job_id)  # its parts, joined
    if stored is None:
        raise APIError(500, f"the audio of job {job_id} is missing", type="server_error", code="job_audio_missing")
    audio, sample_rate = stored
    data = await asyncio.to_thread(encode_audio, audio, sample_rate, fmt)
    return Response(data, media_type=content_type(fmt, sample_rate),
                    headers={"X-Sample-Rate": str(encoded_rate(fmt, sample_rate)),
                             "Content-Disposition": f'attachment; filename="{job_id}.{EXTENSIONS[fmt]}"'})


@static.get("/v1/jobs/{job_id}/captions", response_class=Response,
            responses={200: {"content": {media: {} for media in CAPTION_TYPES.values()},
                             "description": "Sentence-level captions: each sentence's text, start and end"},
                       404: {"description": "No such job"},
                       409: {"description": "Not a succeeded speech job"}},
            summary="Download a succeeded speech job's captions (WebVTT, SRT or JSON)")
async def job_captions(job_id: str, key: ClientKey, store: StoreDep, request: Request,
                       format: Annotated[Literal[CAPTION_FORMATS], Query(description="vtt (default), srt or json")]
                       = "vtt"):
    job = await _job(store, job_id, _owner(request, key))
    if job.type != "speech" or job.status != js.SUCCEEDED:
        what = "a music job: it has no captions" if job.type != "speech" else f"{job.status}"
        raise APIError(409, f"job {job_id} is {what}; captions come with a succeeded speech job", param="job_id",
                       code="job_not_succeeded" if job.type == "speech" else "job_has_no_captions")
    track = await asyncio.to_thread(store.captions, job_id)  # each stored sentence over its samples
    if track is None:
        raise APIError(500, f"the captions of job {job_id} are missing", type="server_error",
                       code="job_captions_missing")
    text = json.dumps(track.to_dict()) if format == "json" else track.render(format)
    return Response(text, media_type=CAPTION_TYPES[format],
                    headers={"Content-Disposition": f'attachment; filename="{job_id}.{format}"'})


def router(bodies: Bodies) -> APIRouter:
    routes = APIRouter(tags=["jobs"])
    JobBody = bodies.job  # noqa: N806 - a class

    @routes.post("/v1/jobs", status_code=202, responses={200: {"description": "The job this Idempotency-Key created"},
                                                         409: {"description": "Idempotency-Key reused with another body"},
                                                         507: {"description": "Job storage is full: disk budget or free "
                                                                              "disk"},
                                                         422: {"description": "A speech job's stored voice of another "
                                                                              "codec than its model's"},
                                                         **ERROR_RESPONSES},
                 summary="Submit a long generation as a background job")
    async def create_job(body: JobBody, key: ClientKey, store: StoreDep, runner: RunnerDep, request: Request,
                         idempotency_key: Annotated[str | None, Header(max_length=255)] = None):
        settings = request.app.state.settings
        params = body.model_dump()
        if body.type == "speech":
            params["voice"] = body.voice.id if isinstance(body.voice, VoiceRef) else body.voice
            # checked now, not when the job runs: an unknown model or voice is the submitter's error
            model = await voices.speaker(settings, request.app.state.catalog, body.model)
            speech_options.check_taken(model.name, model.facts, params, request.app.state.catalog.facts,
                                       settings.speech_models)
            await voices.speech_fields(params["voice"], request.app.state.voices, settings, request.app.state.catalog,
                                       model, voices.voice_owner(settings, key))
            params["model"] = model.name
            params["estimated_s"] = speech_seconds_bound(body.input, settings)
        elif body.duration > settings.max_job_duration_s:
            raise APIError(400, f"duration: must be at most {settings.max_job_duration_s:g} seconds, got {body.duration:g}",
                           param="duration", code="invalid_value")
        try:
            job, created = await asyncio.to_thread(store.create, key, params, idempotency_key=idempotency_key,
                                                   max_queued=settings.max_queued_jobs,
                                                   max_queued_per_owner=settings.max_queued_jobs_per_key,
                                                   storage=_storage_limits(settings))
        except js.IdempotencyConflict:
            raise APIError(409, f"Idempotency-Key {idempotency_key!r} was already used with a different request body",
                           param="Idempotency-Key", code="idempotency_key_reused") from None
        except js.QueueFull as full:
            if full.per_key:
                raise APIError(429, f"this key's job queue is full ({full.queued} waiting, "
                                    "TRITONE_MAX_QUEUED_JOBS_PER_KEY); retry once one of them has started",
                               type="rate_limit_error", code="job_queue_full_for_key",
                               headers={"Retry-After": QUEUE_FULL_RETRY_AFTER_S}) from None
            raise APIError(429, f"the job queue is full ({settings.max_queued_jobs} jobs waiting); retry later",
                           type="rate_limit_error", code="job_queue_full",
                           headers={"Retry-After": QUEUE_FULL_RETRY_AFTER_S}) from None
        except js.StorageFull as full:
            raise APIError(507, str(full), type="server_error", code="insufficient_storage") from None
        if created:
            runner.notify()
            await runner.refresh_gauge()
        return _job_response(job, 202 if created else 200)

    routes.include_router(static)
    return routes
