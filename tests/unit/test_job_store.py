"""The job store, on SQLite and on a real PostgreSQL (the `database` fixture: one suite, two backends), its
leases across replicas, and the window plan of long jobs: no Triton."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from tritone.gateway import job_store as js
from tritone.gateway.job_runner import Window, window_plan
from tritone.gateway.job_store import JobStore


def params(prompt: str = "lo-fi piano", duration: float = 8.0, **extra) -> dict:
    return {"prompt": prompt, "duration": duration, "temperature": None, "top_k": None, "top_p": None,
            "guidance_scale": None, "seed": None, "response_format": "wav", **extra}


@pytest.fixture
def store(database):
    store = JobStore(database)
    yield store
    store.close()


def test_create_get_and_the_api_object(store):
    job, created = store.create("alice", params(duration=12.5))
    assert created and job.status == js.QUEUED and job.id.startswith("job_")
    got = store.get(job.id)
    assert got == job
    body = got.to_dict()
    assert body == {
        "id": job.id, "object": "job", "type": "music", "status": "queued", "prompt": "lo-fi piano", "duration": 12.5,
        "response_format": "wav", "created_at": int(job.created_at), "started_at": None, "finished_at": None,
        "queue_position": 1, "progress": 0.0, "eta_s": None, "error": None, "audio_url": None,
    }
    assert store.get("job_missing") is None
    assert store.get(job.id, owner="bob") is None and store.get(job.id, owner="alice") == job


def test_the_default_database_is_sqlite_in_wal_mode_under_the_data_dir(tmp_path):
    store = JobStore(tmp_path)
    try:
        assert store.db.url.database == str(tmp_path / "tritone.sqlite3")
        with store.db.transaction() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert store.db.revision() == "0002"  # Alembic's head
    finally:
        store.close()


def test_list_is_newest_first_and_per_owner(store):
    a, _ = store.create("alice", params("a"))
    b, _ = store.create("bob", params("b"))
    c, _ = store.create("alice", params("c"))
    assert [job.id for job in store.list()] == [c.id, b.id, a.id]
    assert [job.id for job in store.list(owner="alice")] == [c.id, a.id]
    assert [job.id for job in store.list(limit=1)] == [c.id]


def test_queue_positions_follow_submission_order_and_move_up(store):
    jobs = [store.create("k", params(str(i)))[0] for i in range(3)]
    assert [store.get(job.id).queue_position for job in jobs] == [1, 2, 3]
    claimed = store.claim_next()
    assert claimed.id == jobs[0].id and claimed.status == js.RUNNING and claimed.started_at is not None
    assert claimed.queue_position is None and claimed.lease == js.Lease(claimed.id, store.replica, 1)
    assert [store.get(job.id).queue_position for job in jobs] == [None, 1, 2]
    store.cancel(jobs[1].id)
    assert store.get(jobs[2].id).queue_position == 1
    assert {job.id: job.queue_position for job in store.list()} == {jobs[0].id: None, jobs[1].id: None,
                                                                      jobs[2].id: 1}
    assert store.queued_count() == 1


def test_progress_and_finish(store):
    job, _ = store.create("k", params())
    lease = store.claim_next().lease
    assert store.update_progress(lease, 42.0, 3.5) == js.RUNNING
    running = store.get(job.id)
    assert (running.progress, running.eta_s) == (42.0, 3.5)
    assert store.finish(lease, js.SUCCEEDED)
    done = store.get(job.id).to_dict()
    assert done["status"] == "succeeded" and done["progress"] == 100 and done["eta_s"] == 0
    assert done["audio_url"] == f"/v1/jobs/{job.id}/audio" and done["finished_at"] is not None
    assert not store.finish(lease, js.FAILED)  # only a running job finishes


def test_failure_keeps_its_message(store):
    job, _ = store.create("k", params())
    lease = store.claim_next().lease
    assert store.finish(lease, js.FAILED, "generation failed: boom")
    failed = store.get(job.id)
    assert failed.status == js.FAILED and failed.error == "generation failed: boom"
    assert failed.to_dict()["audio_url"] is None


def test_cancel_queued_running_and_finished(store):
    queued, _ = store.create("k", params("q"))
    running, _ = store.create("k", params("r"))
    store.cancel(queued.id)  # no longer first in line
    lease = store.claim_next().lease
    assert lease.job_id == running.id
    cancelled, before = store.cancel(running.id)
    assert before == js.RUNNING and cancelled.status == js.CANCELLED and cancelled.finished_at is not None
    assert store.update_progress(lease, 50, 1) == js.CANCELLED  # the runner sees it and stops
    assert store.save_part(lease, 0, np.zeros(4, np.float32), 32000) == js.CANCELLED  # and writes no audio
    assert store.parts(running.id) == []
    assert not store.finish(lease, js.SUCCEEDED)  # a cancel beats a late finish
    with pytest.raises(js.JobFinished) as finished:
        store.cancel(running.id)
    assert finished.value.job.status == js.CANCELLED
    with pytest.raises(js.JobNotFound):
        store.cancel("job_missing")
    with pytest.raises(js.JobNotFound):
        store.cancel(queued.id, owner="someone else")
    assert store.claim_next() is None


def test_idempotency_key_returns_the_same_job_per_owner(store):
    first, created = store.create("alice", params(), idempotency_key="k1")
    again, created_again = store.create("alice", params(), idempotency_key="k1")
    assert created and not created_again and again.id == first.id
    other, created_other = store.create("bob", params(), idempotency_key="k1")  # keys are per owner
    assert created_other and other.id != first.id
    with pytest.raises(js.IdempotencyConflict):
        store.create("alice", params(duration=9.0), idempotency_key="k1")
    assert len(store.list()) == 2


def test_a_full_queue_refuses_new_jobs_but_not_idempotent_retries(store):
    first, _ = store.create("k", params("a"), idempotency_key="a", max_queued=2)
    store.create("k", params("b"), max_queued=2)
    with pytest.raises(js.QueueFull):
        store.create("k", params("c"), max_queued=2)
    assert store.create("k", params("a"), idempotency_key="a", max_queued=2)[0].id == first.id
    store.claim_next()  # running jobs do not count
    store.create("k", params("c"), max_queued=2)


def test_a_key_past_its_own_queue_limit_is_refused_across_replicas_while_others_still_queue(database):
    a, b = JobStore(database, replica="replica-a"), JobStore(database, replica="replica-b")
    a.create("alice", params("1"), max_queued_per_owner=2)
    b.create("alice", params("2"), max_queued_per_owner=2)  # through another replica: the same count
    for store in (a, b):
        with pytest.raises(js.QueueFull) as full:
            store.create("alice", params("3"), max_queued_per_owner=2)
        assert (full.value.queued, full.value.per_key) == (2, True)
    assert b.create("bob", params("1"), max_queued_per_owner=2)[1]
    a.claim_next()  # alice's first runs: no longer queued
    assert b.create("alice", params("3"), max_queued_per_owner=2)[1]


def test_restart_requeues_running_jobs_in_their_original_order_once_their_lease_expired(database):
    clock = Clock()
    store = JobStore(database, clock=clock)
    old, _ = store.create("k", params("old"))
    done, _ = store.create("k", params("done"))
    waiting, _ = store.create("k", params("waiting"))
    lease = store.claim_next().lease
    store.update_progress(lease, 60, 2)
    store.finish(store.claim_next().lease, js.SUCCEEDED)
    store.close()  # the gateway stops with `old` running

    reopened = JobStore(database, clock=clock)
    try:
        assert reopened.get(old.id).status == js.RUNNING
        assert reopened.recover() == []  # its lease still runs: its replica may be alive
        clock.now += js.LEASE_S + 1
        assert reopened.recover() == [old.id]
        requeued = reopened.get(old.id)
        assert (requeued.status, requeued.progress, requeued.started_at, requeued.eta_s) == (js.QUEUED, 0, None, None)
        assert requeued.queue_position == 1 and reopened.get(waiting.id).queue_position == 2
        assert reopened.get(done.id).status == js.SUCCEEDED
        lease = reopened.claim_next().lease
        assert lease.job_id == old.id and lease.token == 2
        assert reopened.release(lease) and reopened.get(old.id).status == js.QUEUED  # graceful stop does the same
        with pytest.raises(js.LeaseLost):  # and the released lease writes nothing more
            reopened.update_progress(lease, 70, 1)
    finally:
        reopened.close()


# --- leases: two replicas on one database --------------------------------------------------------------------


def window(i: int, samples: int = 8) -> np.ndarray:
    return np.full(samples, i, np.float32)


def test_a_replica_takes_over_an_expired_lease_and_continues_from_the_last_finished_window(database):
    clock = Clock()
    a = JobStore(database, clock=clock, replica="replica-a")
    b = JobStore(database, clock=clock, replica="replica-b")
    job, _ = a.create("k", params(duration=40.0))
    lease_a = a.claim_next().lease
    assert lease_a == js.Lease(job.id, "replica-a", 1)
    for i in range(2):  # windows 0 and 1 finish on replica a, with the codes the next window continues from
        assert a.save_part(lease_a, i, window(i), 32000, codes=np.full((4, 3), i)) == js.RUNNING
    assert b.claim_next() is None  # a's lease holds
    clock.now += js.LEASE_S - 1
    assert a.heartbeat(lease_a) == js.RUNNING  # renewed: another LEASE_S from now
    clock.now += js.LEASE_S - 1
    assert b.claim_next() is None
    clock.now += 2  # replica a stopped renewing (it died, or hangs): its lease expires

    taken = b.claim_next()
    assert taken.id == job.id and taken.status == js.RUNNING and taken.lease == js.Lease(job.id, "replica-b", 2)
    parts = b.parts(job.id)
    assert [part.index for part in parts] == [0, 1]  # b continues with window 2
    np.testing.assert_array_equal(parts[1].codes, np.full((4, 3), 1))
    assert parts[1].seconds == 8 / 32000

    # fencing: replica a's writes are refused, with an exception naming who holds the job now
    with pytest.raises(js.LeaseLost) as lost:
        a.save_part(lease_a, 2, window(99), 32000)
    assert str(lost.value) == (f"job {job.id}: replica replica-a no longer holds its lease (token 1); "
                               "replica replica-b took it over (token 2)")
    for write in (lambda: a.update_progress(lease_a, 99, 0), lambda: a.heartbeat(lease_a),
                  lambda: a.finish(lease_a, js.SUCCEEDED), lambda: a.finish(lease_a, js.FAILED, "x")):
        with pytest.raises(js.LeaseLost):
            write()
    assert not a.release(lease_a)
    assert [part.index for part in b.parts(job.id)] == [0, 1] and b.get(job.id).status == js.RUNNING

    assert b.save_part(taken.lease, 2, window(2), 32000) == js.RUNNING
    assert b.finish(taken.lease, js.SUCCEEDED)
    audio, rate = b.audio(job.id)
    assert rate == 32000
    np.testing.assert_array_equal(audio, np.concatenate([window(0), window(1), window(2)]))
    assert a.save_part(lease_a, 3, window(3), 32000) == js.SUCCEEDED  # nor after the job ended: it stops
    assert len(b.parts(job.id)) == 3


def test_replicas_claiming_at_once_take_different_jobs(database):
    stores = [JobStore(database, replica=f"replica-{i}") for i in range(2)]
    created = {stores[0].create("k", params(str(i)))[0].id for i in range(12)}
    claimed: list[str] = []
    lock = threading.Lock()

    def claim(store):
        while (job := store.claim_next()) is not None:
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=claim, args=(stores[i % 2],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(claimed) == sorted(created)  # each job once
    assert {job.status for job in stores[0].list()} == {js.RUNNING}


def test_a_speech_job_keeps_each_finished_sentence_and_its_caption(store):
    job, _ = store.create("k", {"type": "speech", "input": "One. Two. Three.", "estimated_s": 3.0})
    lease = store.claim_next().lease
    for i in (2, 0):  # sentences finish out of order (several stream at once)
        store.save_part(lease, i, window(i, 24 * (i + 1)), 24000, text=["One.", "Two.", "Three."][i])
    assert [(part.index, part.text, part.samples) for part in store.parts(job.id)] == [(0, "One.", 24), (2, "Three.", 72)]
    store.save_part(lease, 1, window(1, 48), 24000, text="Two.")
    store.finish(lease, js.SUCCEEDED)
    captions = store.captions(job.id).to_dict()
    assert [(c["text"], c["start_sample"], c["end_sample"]) for c in captions["captions"]] == \
        [("One.", 0, 24), ("Two.", 24, 72), ("Three.", 72, 144)]
    assert len(store.audio(job.id)[0]) == 144


# --- retention: delete, expiry, disk budget -----------------------------------------------------------------


class Clock:
    """Wall-clock seconds that a test moves by hand."""

    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def finished_job(store, owner="k", status=js.SUCCEEDED, samples=4) -> js.Job:
    """A job run to `status` (its audio, `samples` float32 samples, stored when it succeeded)."""
    job, _ = store.create(owner, params())
    claimed = store.claim_next()
    assert claimed.id == job.id
    if status == js.SUCCEEDED:
        store.save_part(claimed.lease, 0, np.zeros(samples, np.float32), 32000)
    store.finish(claimed.lease, status, None if status == js.SUCCEEDED else "boom")
    return store.get(job.id)


def test_delete_removes_the_job_and_its_audio_and_only_for_its_owner(store):
    job = finished_job(store, owner="alice")
    assert not store.delete(job.id, owner="bob")
    assert store.get(job.id) is not None and store.audio(job.id) is not None
    assert store.delete(job.id, owner="alice")
    assert store.get(job.id) is None and store.audio(job.id) is None
    assert not store.delete(job.id) and not store.delete("job_missing")


def test_expire_deletes_jobs_that_ended_before_the_cutoff_and_their_audio(database):
    clock = Clock()
    store = JobStore(database, clock=clock)
    try:
        old = finished_job(store)
        failed = finished_job(store, status=js.FAILED)
        clock.now += 100
        recent = finished_job(store)
        waiting, _ = store.create("k", params("waiting"))  # never ended: never expires
        assert store.expire(before=clock.now - 50) == [old.id, failed.id]
        assert store.get(old.id) is None and store.audio(old.id) is None
        assert store.get(failed.id) is None
        assert store.get(recent.id).status == js.SUCCEEDED and store.audio(recent.id) is not None
        assert store.expire(before=clock.now + 1) == [recent.id]
        assert store.get(waiting.id).status == js.QUEUED
    finally:
        store.close()


def test_a_job_past_the_disk_budget_is_refused_counting_stored_and_pending_audio(store):
    finished_job(store, samples=250_000)  # 0.95 MiB stored
    store.create("k", params(duration=10.0))  # queued: 1.22 MiB reserved
    budget = js.StorageLimits(budget_bytes=3 * 2**20)
    store.create("k", params(duration=5.0), storage=budget)  # 0.61 MiB more: 2.78 MiB in all, within
    with pytest.raises(js.StorageFull) as full:
        store.create("k", params(duration=2.0), storage=budget)  # 0.24 MiB more: over
    assert str(full.value) == (
        "job storage is full: 1.0 MiB of job audio is stored and 1.8 MiB reserved by queued and running jobs; this "
        "job needs 0.2 MiB more, over the 3.0 MiB budget (TRITONE_JOB_DISK_BUDGET_BYTES). Delete finished jobs "
        "(DELETE /v1/jobs/{id}) or wait until they expire")
    assert len(store.list()) == 3  # nothing was added


def test_a_job_that_would_leave_too_little_free_disk_is_refused_on_sqlite(store):
    if not store.db.is_sqlite:  # PostgreSQL: the database server's disk is not the gateway's to measure
        assert store.create("k", params(), storage=js.StorageLimits(min_free_bytes=2**62))[1]
        return
    with pytest.raises(js.StorageFull) as full:
        store.create("k", params(), storage=js.StorageLimits(min_free_bytes=2**62))
    assert str(full.value).startswith("the disk is almost full: ") and "(TRITONE_JOB_MIN_FREE_BYTES)" in str(full.value)
    assert store.list() == []


@pytest.mark.parametrize("duration, plan", [
    (8, [Window(0, 8)]),
    (30, [Window(0, 30)]),
    (31, [Window(0, 30), Window(10, 1)]),
    (75, [Window(0, 30), Window(10, 20), Window(10, 20), Window(10, 5)]),
    (300, [Window(0, 30)] + [Window(10, 20)] * 13 + [Window(10, 10)]),
    (30.5, [Window(0, 29.5), Window(10, 1)]),  # no half-second tail: it borrows from the window before
    (50.25, [Window(0, 30), Window(10, 19.25), Window(10, 1)]),
])
def test_window_plan(duration, plan):
    windows = window_plan(duration, max_window=30)  # MusicGen's max_duration_s
    assert windows == plan
    assert sum(w.new_s for w in windows) == pytest.approx(duration)
    assert all(w.prompt_s + w.new_s <= 30 for w in windows)


def test_a_shorter_model_limit_gives_shorter_windows_on_a_third_of_a_window_of_context():
    assert window_plan(12, max_window=12) == [Window(0, 12)]
    assert window_plan(20, max_window=12) == [Window(0, 12), Window(4, 8)]
    assert window_plan(40, max_window=12) == [Window(0, 12), Window(4, 8), Window(4, 8), Window(4, 8), Window(4, 4)]


def test_window_plan_refuses_nothing_to_generate():
    with pytest.raises(ValueError):
        window_plan(0, max_window=30)


# --- a data dir of a gateway from before the shared database ----------------------------------------------------

OLD_JOBS_SCHEMA = """
CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, owner TEXT NOT NULL,
    idempotency_key TEXT, body_hash TEXT NOT NULL, params TEXT NOT NULL, status TEXT NOT NULL, created_at REAL NOT NULL,
    started_at REAL, finished_at REAL, progress REAL NOT NULL DEFAULT 0, eta_s REAL, error TEXT);
"""


def test_jobs_and_results_of_the_old_single_file_store_are_imported(tmp_path):
    import json
    import sqlite3

    import soundfile

    db = sqlite3.connect(tmp_path / "jobs.sqlite3")
    db.executescript(OLD_JOBS_SCHEMA)
    rows = [("job_music", params(duration=1.0), "succeeded"), ("job_speech", {"type": "speech", "input": "A. B.",
             "estimated_s": 1.0, "model": "orpheus"}, "succeeded"), ("job_running", params(duration=2.0), "running")]
    for i, (job_id, body, status) in enumerate(rows):
        db.execute("INSERT INTO jobs (id, owner, idempotency_key, body_hash, params, status, created_at, started_at, "
                   "finished_at, progress) VALUES (?, 'k', ?, ?, ?, ?, ?, ?, ?, ?)",
                   (job_id, "key-1" if i == 0 else None, js.body_hash(body), json.dumps(body), status, 10.0 + i,
                    11.0 + i, None if status == "running" else 12.0 + i, 100 if status == "succeeded" else 40))
    db.commit()
    db.close()
    (tmp_path / "results").mkdir()
    music = np.linspace(-1, 1, 320, dtype=np.float32)
    soundfile.write(tmp_path / "results" / "job_music.wav", music, 32000, subtype="FLOAT")
    speech = np.linspace(-1, 1, 240, dtype=np.float32)
    soundfile.write(tmp_path / "results" / "job_speech.wav", speech, 24000, subtype="FLOAT")
    (tmp_path / "results" / "job_speech.captions.json").write_text(json.dumps({"sample_rate": 24000, "captions": [
        {"text": "A.", "start_sample": 0, "end_sample": 100}, {"text": "B.", "start_sample": 100, "end_sample": 240}]}))

    store = JobStore(tmp_path)
    try:
        assert [(job.id, job.status) for job in store.list()] == [
            ("job_running", js.QUEUED), ("job_speech", js.SUCCEEDED), ("job_music", js.SUCCEEDED)]
        audio, rate = store.audio("job_music")
        assert rate == 32000
        np.testing.assert_array_equal(audio, music)
        audio, rate = store.audio("job_speech")
        assert rate == 24000
        np.testing.assert_array_equal(audio, speech)
        assert [(c.text, c.start_sample, c.end_sample) for c in store.captions("job_speech").captions] == \
            [("A.", 0, 100), ("B.", 100, 240)]
        requeued = store.get("job_running")
        assert (requeued.progress, requeued.started_at, requeued.queue_position) == (0, None, 1)
        assert store.create("k", params(duration=1.0), idempotency_key="key-1")[0].id == "job_music"  # its key holds
        assert store.claim_next().id == "job_running"
    finally:
        store.close()
    reopened = JobStore(tmp_path)  # imported once: nothing doubles
    try:
        assert len(reopened.list()) == 3
    finally:
        reopened.close()
