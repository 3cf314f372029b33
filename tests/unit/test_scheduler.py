"""The in-flight batched engine, driven step by step (no threads) on the tiny-random export."""

import numpy as np
import pytest

from tritone.ensemble import tensors as T
from tritone.ensemble.engine.chunker import ChunkPolicy
from tritone.ensemble.musicgen.delay_pattern import frames_for, num_steps
from tritone.ensemble.musicgen.pipeline import MusicgenPipeline, PipelineSettings
from tritone.ensemble.musicgen.request import InvalidRequest
from tritone.ensemble.engine.scheduler import AtCapacity
from tests.list_stream import ListStream, run_until_ended

POLICY = ChunkPolicy(first_frames=4, growth=2.0, max_chunk_frames=8, left_context=3, lookahead=2)
DURATION = 0.5  # 25 frames at 50 Hz: chunks of 4, 8, 8, 5 frames
PROMPT_A = "lo-fi piano with rain"
PROMPT_B = "90s rock song with loud guitars and heavy drums"


@pytest.fixture
def make_pipeline(tiny_repository):
    def make(max_slots=4, max_queue=4):
        settings = PipelineSettings(max_slots=max_slots, max_queue=max_queue, policy=POLICY)
        return MusicgenPipeline(tiny_repository, settings)

    return make


@pytest.fixture
def pipeline(make_pipeline):
    return make_pipeline()


def submit(pipeline, text=PROMPT_A, duration=DURATION, stream=None, **fields):
    fields = {T.TOP_K: 1, T.RETURN_CODES: True, **fields}
    params = pipeline.validate({T.TEXT: text, T.DURATION: duration, **fields})
    stream = stream or ListStream()
    pipeline.submit([(params, stream)])
    return stream


def run_steps(pipeline, steps):
    for _ in range(steps):
        pipeline.engine.run_once(emit_inline=True)


def alone(make_pipeline, **fields) -> np.ndarray:
    pipeline = make_pipeline()
    stream = submit(pipeline, **fields)
    run_until_ended(pipeline, stream)
    assert pipeline.engine.stats.max_batch_requests == 1
    return stream.codes()


FRAMES = frames_for(DURATION, 50)
STEPS = num_steps(FRAMES, 4)


def test_two_requests_submitted_together_share_every_decode_step(pipeline):
    a = submit(pipeline, PROMPT_A)
    b = submit(pipeline, PROMPT_B)
    run_until_ended(pipeline, a, b)
    stats = pipeline.engine.stats
    assert stats.max_batch_requests == 2
    assert stats.steps == STEPS
    assert stats.request_steps == 2 * STEPS
    assert (stats.admitted, stats.completed, stats.joined_running) == (2, 2, 0)
    assert pipeline.engine.active == []


def test_a_stream_gets_ordered_chunks_with_exactly_one_final_and_all_its_audio(pipeline):
    stream = submit(pipeline)
    run_until_ended(pipeline, stream)
    chunks = stream.chunks
    assert [kind for kind, _ in stream.events] == ["chunk"] * 4
    assert [chunk.index for chunk in chunks] == [0, 1, 2, 3]
    assert [chunk.final for chunk in chunks] == [False, False, False, True]
    assert [chunk.codes.shape for chunk in chunks] == [(4, 4), (4, 8), (4, 8), (4, 5)]
    hop = pipeline.model.hop_length
    assert [chunk.audio.shape[0] for chunk in chunks] == [4 * hop, 8 * hop, 8 * hop, 5 * hop]
    assert sum(chunk.audio.shape[0] for chunk in chunks) == FRAMES * hop
    assert all(chunk.audio.dtype == np.float32 for chunk in chunks)
    codes = stream.codes()
    assert codes.shape == (4, FRAMES)
    assert ((codes >= 0) & (codes < pipeline.model.codebook_size)).all()  # never the pad token


def test_chunks_carry_no_codes_unless_asked(pipeline):
    stream = submit(pipeline, return_codes=False)
    run_until_ended(pipeline, stream)
    assert [chunk.codes for chunk in stream.chunks] == [None] * 4


def test_different_prompts_give_different_codes(make_pipeline):
    # otherwise the in-flight batching tests below could not tell requests apart
    assert not np.array_equal(alone(make_pipeline, text=PROMPT_A), alone(make_pipeline, text=PROMPT_B))


@pytest.mark.parametrize(
    "first_guidance, joiner_guidance",
    [(3.0, 3.0), (1.0, 3.0), (3.0, 1.0), (1.0, 1.0)],
    ids=["guided+guided", "unguided+guided", "guided+unguided", "unguided+unguided"],
)
def test_a_request_joining_mid_generation_produces_the_same_codes_as_alone(make_pipeline, first_guidance, joiner_guidance):
    expected_first = alone(make_pipeline, text=PROMPT_A, guidance_scale=first_guidance)
    expected_joiner = alone(make_pipeline, text=PROMPT_B, guidance_scale=joiner_guidance)

    pipeline = make_pipeline()
    first = submit(pipeline, PROMPT_A, guidance_scale=first_guidance)
    run_steps(pipeline, 7)
    joiner = submit(pipeline, PROMPT_B, guidance_scale=joiner_guidance)
    run_until_ended(pipeline, first, joiner)

    stats = pipeline.engine.stats
    assert stats.joined_running == 1
    assert stats.max_batch_requests == 2
    assert stats.steps == STEPS + 7
    np.testing.assert_array_equal(first.codes(), expected_first)
    np.testing.assert_array_equal(joiner.codes(), expected_joiner)


def test_seeded_sampling_is_reproducible_whatever_else_is_in_the_batch(make_pipeline):
    seeded = {T.TOP_K: 50, T.TEMPERATURE: 1.0, T.SEED: 7, T.GUIDANCE_SCALE: 3.0}
    expected = alone(make_pipeline, text=PROMPT_A, **seeded)
    assert np.array_equal(alone(make_pipeline, text=PROMPT_A, **seeded), expected)
    assert not np.array_equal(alone(make_pipeline, text=PROMPT_A, **{**seeded, T.SEED: 8}), expected)

    pipeline = make_pipeline()
    other = submit(pipeline, PROMPT_B, top_k=50, temperature=1.0, seed=99, guidance_scale=1.0)
    run_steps(pipeline, 3)
    mine = submit(pipeline, PROMPT_A, **seeded)
    late = submit(pipeline, PROMPT_B, top_k=50, temperature=1.0, seed=5)
    run_until_ended(pipeline, other, mine, late)
    assert pipeline.engine.stats.max_batch_requests == 3
    np.testing.assert_array_equal(mine.codes(), expected)


def test_a_cancelled_stream_frees_its_slot_before_the_next_step_and_is_closed_once(pipeline):
    leaving = submit(pipeline, PROMPT_A, stream=ListStream(cancel_after_chunks=1))
    staying = submit(pipeline, PROMPT_B)
    engine = pipeline.engine
    while not leaving.chunks:
        engine.run_once(emit_inline=True)
    assert leaving.cancelled() and len(engine.active) == 2
    request_steps = engine.stats.request_steps

    engine.run_once(emit_inline=True)
    assert [slot.job.stream for slot in engine.active] == [staying]
    assert engine.stats.request_steps == request_steps + 1  # the step ran for the other request only
    run_until_ended(pipeline, staying)

    assert [kind for kind, _ in leaving.events] == ["chunk", "close"]
    assert engine.stats.cancelled == 1
    assert engine.stats.completed == 1
    assert staying.chunks[-1].final


def generate_without_emitting(engine):
    """Run steps until every admitted request has generated all its frames; their chunks stay queued."""
    engine.run_once()
    while engine.active:
        engine.run_once()
    assert not engine._outbox.empty()


def test_a_stream_cancelled_between_its_last_step_and_its_emission_still_gets_one_final_flag(pipeline):
    stream = submit(pipeline, PROMPT_A)
    engine = pipeline.engine
    generate_without_emitting(engine)  # the last chunk waits in the emitter's queue
    stream.cancel = True  # the client goes away before the emitter sends it
    engine.run_once(emit_inline=True)
    assert [kind for kind, _ in stream.events][-1] == "close"
    assert sum(kind == "close" for kind, _ in stream.events) == 1
    assert not any(kind == "chunk" and payload.final for kind, payload in stream.events)


def test_stopping_the_engine_sends_what_its_last_step_posted_and_fails_the_rest(make_pipeline):
    pipeline = make_pipeline(max_slots=1)
    finished = submit(pipeline, PROMPT_A)
    engine = pipeline.engine
    generate_without_emitting(engine)
    waiting = submit(pipeline, PROMPT_B)
    engine.start()
    engine.stop()
    assert finished.chunks[-1].final and not finished.failed
    assert [kind for kind, _ in waiting.events][-1:] in (["fail"], ["chunk"]) and waiting.ended


def test_a_request_cancelled_while_waiting_is_closed_without_being_admitted(make_pipeline):
    pipeline = make_pipeline(max_slots=1)
    running = submit(pipeline, PROMPT_A)
    waiting = submit(pipeline, PROMPT_B)
    run_steps(pipeline, 2)
    waiting.cancel = True
    run_until_ended(pipeline, running)
    assert [kind for kind, _ in waiting.events] == ["close"]
    assert pipeline.engine.stats.admitted == 1
    assert pipeline.engine.stats.cancelled == 1


def test_a_waiting_request_is_admitted_when_a_slot_frees(make_pipeline):
    pipeline = make_pipeline(max_slots=1)
    first = submit(pipeline, PROMPT_A)
    second = submit(pipeline, PROMPT_B)
    run_until_ended(pipeline, first, second)
    stats = pipeline.engine.stats
    assert (stats.admitted, stats.completed, stats.max_batch_requests) == (2, 2, 1)
    assert stats.steps == 2 * STEPS


def test_submitting_beyond_slots_plus_queue_raises_at_capacity(make_pipeline):
    pipeline = make_pipeline(max_slots=2, max_queue=1)
    # distinct seeds: identical waiting requests trip the bug shown below
    streams = [submit(pipeline, seed=seed) for seed in range(2)]
    pipeline.engine.run_once(emit_inline=True)  # both admitted
    streams.append(submit(pipeline, seed=2))  # queued
    with pytest.raises(AtCapacity, match="at capacity: 2 streams generating and 1 waiting"):
        submit(pipeline, seed=3)
    run_until_ended(pipeline, *streams)
    assert pipeline.engine.stats.completed == 3


def test_a_burst_before_admission_is_still_capped_at_slots_plus_queue(make_pipeline):
    pipeline = make_pipeline(max_slots=2, max_queue=1)
    for seed in range(3):
        submit(pipeline, seed=seed)
    with pytest.raises(AtCapacity):
        submit(pipeline, seed=3)


def test_two_identical_requests_waiting_at_once_are_both_served(pipeline):
    first = submit(pipeline, PROMPT_A)
    second = submit(pipeline, PROMPT_A)
    run_until_ended(pipeline, first, second)
    np.testing.assert_array_equal(first.codes(), second.codes())


class FailingOnce:
    """Wraps the LM; its next step raises."""

    def __init__(self, lm):
        self.lm = lm
        self.armed = False

    def zeros(self, shape):
        return self.lm.zeros(shape)

    def cross_kv(self, hidden):
        return self.lm.cross_kv(hidden)

    def step(self, *args):
        if self.armed:
            self.armed = False
            raise RuntimeError("lm step exploded")
        return self.lm.step(*args)


def test_a_failing_step_fails_the_active_streams_and_the_engine_serves_the_next_request(pipeline):
    engine = pipeline.engine
    pipeline.family.lm = lm = FailingOnce(pipeline.family.lm)
    a = submit(pipeline, PROMPT_A)
    b = submit(pipeline, PROMPT_B)
    run_steps(pipeline, 3)
    lm.armed = True
    engine.run_once(emit_inline=True)
    for stream in (a, b):
        assert [kind for kind, _ in stream.events] == ["fail"]
        assert str(stream.events[0][1]) == "lm step exploded"
    assert engine.active == []
    assert engine.stats.failed == 2

    run_steps(pipeline, 2)
    assert [kind for kind, _ in a.events] == ["fail"]  # nothing more reaches a failed stream

    c = submit(pipeline, PROMPT_A)
    run_until_ended(pipeline, c)
    assert [chunk.index for chunk in c.chunks] == [0, 1, 2, 3]
    assert c.chunks[-1].final
    assert engine.stats.completed == 1


def test_when_the_last_step_completes_two_chunks_both_are_sent(tiny_repository):
    # Default policy, 1.5 s = 75 frames: chunks end at 10, 30, 70, 75. The chunk [30, 70) needs
    # 5 frames of lookahead, so it and the final [70, 75) both become ready at the last step.
    pipeline = MusicgenPipeline(tiny_repository, PipelineSettings())
    stream = submit(pipeline, duration=1.5)
    run_until_ended(pipeline, stream)
    assert [(c.index, len(c.codes[0]), c.final) for c in stream.chunks] == [
        (0, 10, False), (1, 20, False), (2, 40, False), (3, 5, True)]


def test_a_continuation_from_prompt_codes_equals_one_longer_generation(tiny_repository):
    # Greedy: continuing from the first 0.5 s of a 0.8 s generation reproduces its last 0.3 s,
    # codes exactly and audio within the streaming tolerance (the prompt is the left context).
    pipeline = MusicgenPipeline(tiny_repository, PipelineSettings())  # default seams: 25 frames of context
    whole = submit(pipeline, duration=0.8)
    run_until_ended(pipeline, whole)
    rest = submit(pipeline, duration=0.3, **{T.PROMPT_CODES: whole.codes()[:, :25]})
    run_until_ended(pipeline, rest)

    np.testing.assert_array_equal(rest.codes(), whole.codes()[:, 25:])
    hop = pipeline.model.hop_length
    continued = np.concatenate([c.audio for c in rest.chunks])
    one_shot = np.concatenate([c.audio for c in whole.chunks])
    assert len(continued) == 15 * hop  # only the new audio is streamed
    np.testing.assert_allclose(continued, one_shot[25 * hop :], atol=1e-4)


@pytest.mark.parametrize(
    ("codes", "message"),
    [
        (np.zeros((3, 10), np.int64), "prompt_codes: must have shape [4, frames >= 1], got [3, 10]"),
        (np.full((4, 10), 64, np.int64), "prompt_codes: values must be in [0, 64), got 64..64"),
        (np.zeros((4, 1400), np.int64), "prompt_codes: 28 s of prompt plus 5 s of new audio is 33 s; the limit is 30 s"),
    ],
)
def test_bad_prompt_codes_are_refused_naming_the_field(pipeline, codes, message):
    with pytest.raises(InvalidRequest) as error:
        pipeline.validate({T.TEXT: PROMPT_A, T.DURATION: 5.0, T.PROMPT_CODES: codes})
    assert str(error.value) == message


def test_a_request_after_another_finished_gets_its_own_conditioning(make_pipeline):
    # The batch's cross-attention cache was once keyed by id(slot), which CPython reuses once a
    # slot is freed: a new request could decode with the previous one's prompt (seen in CI only,
    # where allocation happened to reuse the address). Slots now carry a process-unique serial.
    pipeline = make_pipeline()
    for text in (PROMPT_A, PROMPT_B):
        stream = submit(pipeline, text=text)
        run_until_ended(pipeline, stream)
    alone = make_pipeline()
    expected = submit(alone, text=PROMPT_B)
    run_until_ended(alone, expected)
    np.testing.assert_array_equal(stream.codes(), expected.codes())


def test_the_batch_cache_is_repacked_when_requests_join_and_leave(make_pipeline):
    # Three requests of different lengths join one after another and leave at different steps;
    # each still gets exactly the codes it gets alone (its cache rows move with every repack).
    pipeline = make_pipeline()
    plan = [(PROMPT_A, 0.5, 0), (PROMPT_B, 0.2, 3), ("calm ambient pads", 0.3, 7)]
    streams, step = [], 0
    while len(streams) < len(plan) or not all(s.ended for s in streams):
        for text, duration, at in plan:
            if at == step:
                streams.append(submit(pipeline, text=text, duration=duration))
        pipeline.engine.run_once(emit_inline=True)
        step += 1
    for (text, duration, _), stream in zip(plan, streams):
        alone = make_pipeline()
        expected = submit(alone, text=text, duration=duration)
        run_until_ended(alone, expected)
        np.testing.assert_array_equal(stream.codes(), expected.codes(), err_msg=text)


def test_the_torch_runtime_gives_the_codes_of_the_onnx_runtime(tiny_repository):
    # The GPU target's LM (torch, KV cache on the device) run here on the CPU: same engine, same
    # in-flight batching, the same greedy codes as the exported ONNX graphs.
    def run(settings):
        pipeline = MusicgenPipeline(tiny_repository, settings)
        first = submit(pipeline, PROMPT_A, duration=0.5)
        run_steps(pipeline, 6)
        second = submit(pipeline, PROMPT_B, duration=0.3, **{T.GUIDANCE_SCALE: 1.0})
        run_until_ended(pipeline, first, second)
        return first.codes(), second.codes()

    onnx = run(PipelineSettings(policy=POLICY))
    torch_codes = run(PipelineSettings(policy=POLICY, lm_runtime="torch", device="cpu", dtype="float32"))
    for ours, theirs in zip(torch_codes, onnx):
        np.testing.assert_array_equal(ours, theirs)
