"""Runs queued jobs: `job_workers` asyncio workers, each generating one job at a time over gRPC.

A speech job is its text's sentences (split as /v1/audio/speech splits them), `SPEECH_STREAMS_PER_JOB`
streams at a time so the engine batches them, joined in order; each sentence's first and last sample
make its caption (gateway/captions.py).

A job longer than the music model's limit (its config's max_duration_s) is generated in windows: the
first window is up to that limit; each later one continues from the last 10 s of codes generated so far
(`prompt_codes`) and adds up to the limit less those 10 s. Cancelling a running job cancels its task,
which closes the gRPC stream, so Triton frees the decode slot at its next step. A sweeper deletes jobs (and their audio) that ended
more than `job_ttl_s` ago, at startup and every `job_sweep_interval_s`.

Replicas: workers claim jobs with a lease (gateway/job_store.py) that a heartbeat renews every third of
`job_lease_s`. Each finished music window (with its codes) and each spoken sentence is stored as a part
the moment it finishes, so a job whose replica died is taken over by another once the lease expires and
continues after its last stored part: nothing generated twice into the result, no finished audio lost.
Every write carries the lease: a runner whose job was taken over gets LeaseLost and stops writing. A
gateway that stops gracefully releases its jobs (queued again, their parts kept). A database that goes
away mid-job stops the job here without a write; its lease expires and it is taken over (by this
replica too) once the database is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tritone.client import ClientError, MusicRequest, SpeechRequest
from tritone.client.sentences import split_sentences
from tritone.gateway import job_store as js
from tritone.gateway import speech_options, voices
from tritone.gateway.catalog import ModelCatalog
from tritone.gateway.database import DatabaseUnavailable
from tritone.gateway.errors import APIError, with_api_fields
from tritone.gateway.generation import Generation
from tritone.gateway.job_store import Job, JobStore, Lease, LeaseLost
from tritone.gateway.metrics import GatewayMetrics
from tritone.gateway.middleware import REQUEST_ID
from tritone.gateway.schemas import MUSIC_FIELDS, SPEECH_FIELDS
from tritone.gateway.settings import Settings
from tritone.gateway.triton import Triton
from tritone.gateway.voice_store import VoiceStore

log = logging.getLogger("tritone.gateway")

CONTEXT_S = 10.0  # seconds of codes a continuation window is conditioned on
MIN_WINDOW_S = 1.0  # a last window shorter than this borrows from the one before (no 0.02 s requests)
PROGRESS_INTERVAL_S = 0.5  # progress is written at most this often
RETRY_DELAYS_S = (1, 2, 4, 8, 15, 30)  # Triton at capacity or unreachable when a window starts
CANCEL_WAIT_S = 10.0
SPEECH_STREAMS_PER_JOB = 4  # sentences of one speech job generating at once (the engine batches them)
SPEECH_CHARS_PER_S = 15.0  # a narrator's pace: a speech job's audio is estimated at this many characters a second


def speech_seconds_bound(text: str, settings: Settings) -> float:
    """Seconds of audio a speech job is expected to write (its disk reservation): its text at a narrator's pace."""
    return max(1.0, len(text) / SPEECH_CHARS_PER_S)


@dataclass(frozen=True)
class Window:
    prompt_s: float  # seconds of earlier codes to continue from (0: a fresh start)
    new_s: float  # seconds of new audio


def window_plan(duration: float, max_window: float, context: float = CONTEXT_S,
                min_window: float = MIN_WINDOW_S) -> list[Window]:
    """How `duration` seconds are generated, `max_window` (prompt + new audio) per request: min(duration,
    max_window) first, then steps of max_window - context on `context` seconds of earlier codes (at most a
    third of a window, so that a short model limit still makes progress)."""
    if duration <= 0:
        raise ValueError(f"duration must be positive, got {duration}")
    context = min(context, max_window / 3)
    step = max_window - context
    windows = [Window(0.0, min(duration, max_window))]
    remaining = round(duration - windows[0].new_s, 6)
    while remaining > 0:
        windows.append(Window(context, min(remaining, step)))
        remaining = round(remaining - windows[-1].new_s, 6)
    if len(windows) > 1 and windows[-1].new_s < min_window:
        short = min_window - windows[-1].new_s
        windows[-2] = Window(windows[-2].prompt_s, round(windows[-2].new_s - short, 6))
        windows[-1] = Window(context, min_window)
    return windows


class _Cancelled(Exception):
    """The job was cancelled (seen in the database)."""


class JobRunner:
    def __init__(self, store: JobStore, triton: Triton, metrics: GatewayMetrics, settings: Settings,
                 ensure_ready: Callable | None = None, catalog: ModelCatalog | None = None,
                 voice_store: VoiceStore | None = None):
        self.store, self.triton, self.metrics, self.settings = store, triton, metrics, settings
        self.voice_store = voice_store  # a speech job's stored voice, looked up when it runs
        self.ensure_ready = ensure_ready  # async (model name) -> None, e.g. ModelManager.ensure_ready
        self.catalog = catalog  # the music model's max_duration_s: the longest window
        self._wake = asyncio.Event()
        self._workers: list[asyncio.Task] = []
        self._running: dict[str, asyncio.Task] = {}  # job id -> the task generating it
        self._sweeper: asyncio.Task | None = None
        self._stopping = False

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        recovered = await asyncio.to_thread(self.store.recover)
        if recovered:
            log.info("re-queued %d job(s) left running by the last gateway: %s", len(recovered), ", ".join(recovered))
        await self.refresh_gauge()
        await self.sweep()
        self._sweeper = asyncio.create_task(self._sweep_periodically(), name="job-sweeper")
        self._workers = [asyncio.create_task(self._worker(i), name=f"job-worker-{i}")
                         for i in range(self.settings.job_workers)]

    async def stop(self) -> None:
        """Stop the workers; jobs they were generating go back to the queue (continued after their finished parts)."""
        self._stopping = True
        running = dict(self._running)
        background = [*self._workers, *([self._sweeper] if self._sweeper else [])]
        for task in (*background, *running.values()):
            task.cancel()
        await asyncio.gather(*background, *running.values(), return_exceptions=True)
        for lease in running:
            await self._release(lease)
        self._workers = []

    async def _release(self, lease: Lease) -> None:
        try:
            await asyncio.to_thread(self.store.release, lease)
        except DatabaseUnavailable as error:  # its lease expires instead
            log.warning("job %s: not released (%s); another replica takes it over when its lease expires",
                        lease.job_id, error)

    def notify(self) -> None:
        """A job was queued."""
        self._wake.set()

    async def refresh_gauge(self) -> None:
        self.metrics.queued_jobs.set(await asyncio.to_thread(self.store.queued_count))

    async def cancel(self, job_id: str) -> None:
        """Stop generating `job_id` (already marked cancelled in the store) and wait until its stream is closed."""
        task = next((task for lease, task in self._running.items() if lease.job_id == job_id), None)
        if task is not None:
            task.cancel()
            await asyncio.wait([task], timeout=CANCEL_WAIT_S)
        await self.refresh_gauge()

    async def sweep(self) -> list[str]:
        """Delete the jobs that ended more than job_ttl_s ago, and their audio; returns their ids."""
        if self.settings.job_ttl_s <= 0:
            return []
        expired = await asyncio.to_thread(self.store.expire, self.store.clock() - self.settings.job_ttl_s)
        if expired:
            log.info("deleted %d expired job(s) and their audio: %s", len(expired), ", ".join(expired))
        return expired

    async def _sweep_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.settings.job_sweep_interval_s)
            try:
                await self.sweep()
            except Exception:  # a failed sweep (disk, database) is retried at the next interval
                log.exception("sweeping expired jobs failed")

    # -- workers ---------------------------------------------------------------------------------

    async def _worker(self, index: int) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                job = await asyncio.to_thread(self.store.claim_next)
            except DatabaseUnavailable as error:  # polled again below until it is back
                log.warning("claiming jobs: %s", error)
                job = None
            if job is None:
                # Also poll: a job queued by another process, or a wake-up another worker consumed. Not
                # asyncio.wait_for: in 3.11 it swallows a cancellation that lands as the event fires, and
                # the worker polled on after stop() (a gateway that never stopped).
                try:
                    async with asyncio.timeout(1.0):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                continue
            if self._stopping:  # claimed as the gateway stops: it goes back to the queue
                await self._release(job.lease)
                return
            task = asyncio.create_task(self._run(job), name=f"job-{job.id}")
            self._running[job.lease] = task
            heartbeat = asyncio.create_task(self._heartbeat(job.lease, task), name=f"job-{job.id}-heartbeat")
            self._wake.set()  # other idle workers look for more
            await self.refresh_gauge()
            try:
                await asyncio.shield(task)  # cancelling the worker (stop) cancels the job task itself
            except asyncio.CancelledError:
                if self._stopping:
                    raise
            except Exception:  # _run records its own failures; never let a worker die
                log.exception("job %s: runner error", job.id)
            finally:
                heartbeat.cancel()
                self._running.pop(job.lease, None)

    async def _heartbeat(self, lease: Lease, task: asyncio.Task) -> None:
        """Renew the job's lease every third of job_lease_s; stop its task once the lease is lost or it ended."""
        while True:
            await asyncio.sleep(self.settings.job_lease_s / 3)
            try:
                status = await asyncio.to_thread(self.store.heartbeat, lease)
            except DatabaseUnavailable as error:
                log.warning("job %s: lease not renewed: %s", lease.job_id, error)
                continue
            except LeaseLost as lost:
                log.warning("%s: stopping", lost)
                task.cancel()
                return
            if status != js.RUNNING:  # cancelled or deleted through another replica
                task.cancel()
                return

    async def _run(self, job: Job) -> None:
        REQUEST_ID.set(job.id)  # this task's log lines and gRPC requests carry the job's id
        if job.type == "speech":
            log.info("job %s: started (speech, %d characters)", job.id, len(job.params["input"]))
        else:
            log.info("job %s: started (%.1f s)", job.id, job.duration)
        fields = SPEECH_FIELDS if job.type == "speech" else MUSIC_FIELDS
        try:
            if job.type == "speech":
                await self._speak(job)
            else:
                await self._generate(job)
            if await asyncio.to_thread(self.store.finish, job.lease, js.SUCCEEDED):
                log.info("job %s: succeeded", job.id)
        except _Cancelled:
            log.info("job %s: cancelled", job.id)
        except LeaseLost as lost:
            log.warning("%s: stopped, nothing more written", lost)
        except DatabaseUnavailable as error:
            log.warning("job %s: stopped, the database is unavailable (%s); it is taken over once its lease "
                        "expires", job.id, error)
        except asyncio.CancelledError:
            log.info("job %s: generation stopped (%s)", job.id, "shutdown" if self._stopping else "cancelled")
            raise
        except APIError as error:
            await self._fail(job, with_api_fields(error, fields).message)  # prompt/input, not Triton's names
        except ClientError as error:
            await self._fail(job, f"generation failed: {error}")
        except Exception as error:
            log.exception("job %s: unexpected error", job.id)
            await self._fail(job, f"internal error: {type(error).__name__}: {error}")

    async def _fail(self, job: Job, message: str) -> None:
        log.warning("job %s: failed: %s", job.id, message)
        try:
            await asyncio.to_thread(self.store.finish, job.lease, js.FAILED, message)
        except (LeaseLost, DatabaseUnavailable) as error:
            log.warning("job %s: its failure was not recorded: %s", job.id, error)

    async def _retrying(self, job: Job, attempt: Callable):
        """`await attempt()`, waiting and retrying while Triton is at capacity or unreachable."""
        for delay in (*RETRY_DELAYS_S, None):
            try:
                return await attempt()
            except APIError as error:
                if error.status not in (429, 503) or delay is None:
                    raise
                log.info("job %s: %s; retrying in %d s", job.id, error.message, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _open(self, job: Job, request: MusicRequest | SpeechRequest, model: str | None = None) -> Generation:
        model = model or self.settings.music_model

        async def attempt():
            if self.ensure_ready is not None:
                await self.ensure_ready(model)
            return await Generation.open(self.triton, model, request, self.metrics)

        return await self._retrying(job, attempt)

    async def _save(self, job: Job, index: int, audio: np.ndarray, sample_rate: int, **fields) -> None:
        """Store a finished window or sentence under the job's lease; a cancelled job stops here."""
        status = await asyncio.to_thread(self.store.save_part, job.lease, index, audio, sample_rate, **fields)
        if status != js.RUNNING:
            raise _Cancelled(job.id)

    async def _speak(self, job: Job) -> None:
        """The job's sentences, a few streams at a time, each stored as it finishes (a replica taking the job over
        speaks only those not stored yet); the parts, in order, are the audio and their sentences the captions."""
        params = job.params
        sentences = await asyncio.to_thread(split_sentences, params["input"], self.settings.speech_max_sentence_chars)
        model = await voices.speaker(self.settings, self.catalog, params["model"])
        fields = await voices.speech_fields(params.get("voice"), self.voice_store, self.settings, self.catalog, model,
                                            voices.voice_owner(self.settings, job.owner))
        stored = {part.index for part in await asyncio.to_thread(self.store.parts, job.id)}
        total = sum(len(sentence) for sentence in sentences)
        done_chars = sum(len(sentences[i]) for i in stored if i < len(sentences))
        base, started = done_chars / total, time.monotonic()
        gate = asyncio.Semaphore(SPEECH_STREAMS_PER_JOB)

        async def say(i: int) -> None:
            nonlocal done_chars
            request = speech_options.speech_request(sentences[i], params, self.settings.speech_max_sentence_s, fields)
            async with gate:
                generation = await self._open(job, request, model.name)
                try:
                    pieces = [chunk.audio async for chunk in generation.chunks()]
                finally:
                    await generation.close()
            audio = np.concatenate([np.zeros(0, np.float32), *pieces]).astype(np.float32, copy=False)
            await self._save(job, i, audio, generation.sample_rate, text=sentences[i])
            done_chars += len(sentences[i])
            await self._progress_of(job, done_chars / total, time.monotonic() - started, base)

        tasks = [asyncio.create_task(say(i), name=f"job-{job.id}-sentence-{i}")
                 for i in range(len(sentences)) if i not in stored]
        try:
            await asyncio.gather(*tasks)
        finally:  # a failure or a cancel stops the other sentences' streams
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        rates = {part.sample_rate for part in await asyncio.to_thread(self.store.parts, job.id)}
        if len(rates) != 1:
            raise ClientError(f"the sentences were spoken at different sample rates: {sorted(rates)}")

    async def _max_window(self, job: Job) -> float:
        """Seconds one request may hold (prompt + new audio): the music model's max_duration_s."""
        facts = await self._retrying(job, lambda: self.catalog.get(self.settings.music_model))
        return facts.number("max_duration_s") or job.duration

    async def _generate(self, job: Job) -> None:
        """The job's windows, each stored with its codes as it finishes; a replica taking the job over continues
        after the stored ones, from their codes (window i's seed is seed + i wherever it runs)."""
        params = job.params
        plan = window_plan(job.duration, await self._max_window(job))
        seed = params.get("seed")
        finished = await asyncio.to_thread(self.store.parts, job.id)
        finished = finished[:next((n for n, part in enumerate(finished) if part.index != n), len(finished))]
        codes_so_far = [part.codes for part in finished if part.codes is not None]
        codes = np.concatenate(codes_so_far, axis=1) if codes_so_far else None  # [codebooks, frames] so far
        generated_s = sum(part.seconds for part in finished)
        base, started = generated_s / job.duration, time.monotonic()
        last_update = started
        if finished:
            log.info("job %s: continuing after window %d of %d (%.1f s stored)", job.id, len(finished), len(plan),
                     generated_s)
        for i in range(len(finished), len(plan)):
            window = plan[i]
            fields = dict(text=params["prompt"], duration=window.new_s, temperature=params.get("temperature"),
                          top_k=params.get("top_k"), top_p=params.get("top_p"),
                          guidance_scale=params.get("guidance_scale"),
                          seed=None if seed is None else (seed + i) % 2**63, return_codes=len(plan) > 1)
            if window.prompt_s > 0:
                assert codes is not None and generated_s > 0
                frames = max(1, round(window.prompt_s * codes.shape[1] / generated_s))
                fields["prompt_codes"] = np.ascontiguousarray(codes[:, -frames:])
            generation = await self._open(job, MusicRequest(**fields))
            parts: list[np.ndarray] = []
            window_codes: list[np.ndarray] = []
            try:
                async for chunk in generation.chunks():
                    parts.append(chunk.audio)
                    if chunk.codes is not None:
                        window_codes.append(chunk.codes)
                    generated_s += chunk.seconds
                    now = time.monotonic()
                    if now - last_update >= PROGRESS_INTERVAL_S:
                        last_update = now
                        await self._progress(job, generated_s, now - started, base)
            finally:
                await generation.close()
            new_codes = np.concatenate(window_codes, axis=1) if window_codes else None
            if new_codes is not None:
                codes = new_codes if codes is None else np.concatenate([codes, new_codes], axis=1)
            audio = np.concatenate([np.zeros(0, np.float32), *parts]).astype(np.float32, copy=False)
            await self._save(job, i, audio, generation.sample_rate, codes=new_codes)
            if i + 1 < len(plan):
                await self._progress(job, generated_s, time.monotonic() - started, base)

    async def _progress(self, job: Job, generated_s: float, elapsed_s: float, base: float = 0.0) -> None:
        await self._progress_of(job, generated_s / job.duration, elapsed_s, base)

    async def _progress_of(self, job: Job, fraction: float, elapsed_s: float, base: float = 0.0) -> None:
        """`fraction` of the job done, `base` of it before this replica started on it `elapsed_s` ago: progress, an
        ETA at this replica's pace, and a look for a cancel. A database away for the moment skips one update."""
        pace = (fraction - base) / elapsed_s if elapsed_s > 0 else 0.0
        eta = max(0.0, 1.0 - fraction) / pace if pace > 0 else None
        try:
            status = await asyncio.to_thread(self.store.update_progress, job.lease, 100.0 * fraction, eta)
        except DatabaseUnavailable as error:
            log.warning("job %s: progress not recorded: %s", job.id, error)
            return
        if status != js.RUNNING:
            raise _Cancelled(job.id)
