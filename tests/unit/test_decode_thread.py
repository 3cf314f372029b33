"""The decode thread: a pipeline's LM is loaded on the thread that steps it (ensemble/engine/decode_thread.py)."""

from __future__ import annotations

import threading
import time

import pytest

from tritone.ensemble import tensors as T
from tritone.ensemble.engine.decode_thread import DecodeThread, load_on_decode_thread, run_on_decode_thread
from tritone.ensemble.musicgen.pipeline import MusicgenPipeline, PipelineSettings
from tritone.ensemble.orpheus.pipeline import OrpheusPipeline, OrpheusSettings
from tests.list_stream import ListStream


def test_call_runs_on_the_thread_and_returns_or_raises_what_the_function_does():
    thread = DecodeThread("lm-test")
    try:
        assert thread.call(lambda a, b=0: (threading.current_thread().name, a + b), 2, b=3) == ("lm-test", 5)
        with pytest.raises(ValueError, match="bad weights"):
            thread.call(lambda: (_ for _ in ()).throw(ValueError("bad weights")))
        assert thread.call(lambda: thread.call(lambda: 7)) == 7  # a call from the thread itself runs inline
    finally:
        assert thread.close(timeout=5)
    with pytest.raises(RuntimeError, match="the lm-test thread has stopped"):
        thread.call(lambda: 1)


def test_a_started_loop_holds_the_thread_until_it_returns_and_close_then_ends_it():
    thread, stop, ran_on = DecodeThread("loop-test"), threading.Event(), []

    def loop():
        ran_on.append(threading.current_thread().name)
        stop.wait(5)

    thread.start(loop)
    assert not thread.close(timeout=0.2) and thread.alive  # the loop still runs
    stop.set()
    assert thread.close(timeout=5) and not thread.alive
    assert ran_on == ["loop-test"]


def test_a_failed_load_closes_the_thread_it_made_but_not_one_it_was_given():
    def broken():
        raise OSError("no checkpoint")

    before = {t.name for t in threading.enumerate()}
    with pytest.raises(OSError, match="no checkpoint"):
        load_on_decode_thread(None, "own-load", broken)
    assert "own-load" not in {t.name for t in threading.enumerate()} - before
    given = DecodeThread("given-load")
    with pytest.raises(OSError):
        load_on_decode_thread(given, "unused", broken)
    assert given.alive
    given.close()


def test_run_on_decode_thread_passes_the_thread_and_closes_it_after():
    seen = {}

    def body(x, decode_thread):
        seen["thread"] = decode_thread
        seen["name"] = threading.current_thread().name
        return x * 2

    assert run_on_decode_thread("bench", body, 21) == 42
    assert seen["name"] == "bench" and not seen["thread"].alive


def _ended(stream, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while not stream.ended and time.monotonic() < deadline:
        time.sleep(0.01)
    return stream.ended


def _record_threads(pipeline_cls, monkeypatch) -> dict:
    """Where the pipeline's LM was loaded and stepped: thread names."""
    threads = {"load": set(), "step": set()}
    load = pipeline_cls._language_model

    def loading(self, version):
        threads["load"].add(threading.current_thread().name)
        lm = load(self, version)
        step = lm.step

        def stepping(*args):
            threads["step"].add(threading.current_thread().name)
            return step(*args)

        lm.step = stepping
        return lm

    monkeypatch.setattr(pipeline_cls, "_language_model", loading)
    return threads


def _musicgen(repository):
    pipeline = MusicgenPipeline(repository, PipelineSettings(lm_runtime="torch", device="cpu", dtype="float32"))
    stream = ListStream()
    return pipeline, stream, lambda: pipeline.submit(
        [(pipeline.validate({T.TEXT: "lo-fi piano", T.DURATION: 0.2, T.TOP_K: 1}), stream)])


def _orpheus(repository):
    pipeline = OrpheusPipeline(repository, OrpheusSettings(lm_runtime="torch", device="cpu", dtype="float32"))
    stream = ListStream()
    return pipeline, stream, lambda: pipeline.submit(
        pipeline.validate({T.TEXT: "Hello there.", T.MAX_DURATION: 0.3, T.TOP_K: 1}), stream)


@pytest.mark.parametrize("family, make, repository", [("musicgen", _musicgen, "tiny_repository"),
                                                      ("orpheus", _orpheus, "orpheus_repository")])
def test_a_pipeline_loads_its_lm_on_the_thread_that_steps_it(family, make, repository, request, monkeypatch):
    threads = _record_threads(MusicgenPipeline if family == "musicgen" else OrpheusPipeline, monkeypatch)
    pipeline, stream, submit = make(request.getfixturevalue(repository))
    pipeline.engine.start()
    try:
        submit()
        assert _ended(stream) and not stream.failed
    finally:
        pipeline.engine.stop()
    assert threads == {"load": {f"{family}-decode"}, "step": {f"{family}-decode"}}
    assert not pipeline.engine.decode_thread.alive  # stopping the engine ends it
