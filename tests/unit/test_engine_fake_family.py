"""The engine alone, on a toy family defined here (no export, no torch): in-flight admission, the step
plan under the token budget, cancellation, capacity and failure isolation, with exact outputs.

The toy LM reads a row's whole history back from the engine's KV cache (its keys are the tokens
fed so far) and answers next_token(history), so a request's tokens are known in advance and any
mistake in planning, cache writes or repacking shows up as a wrong token."""

import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pytest

from tritone.ensemble.engine.chunker import ChunkPolicy, Chunker, ChunkWindow
from tritone.ensemble.engine.prefix_cache import PrefixCache
from tritone.ensemble.engine.sampling import sample
from tritone.ensemble.engine.scheduler import AtCapacity, Engine, Slot
from tritone.ensemble.engine.step_plan import StepBudget
from tests.list_stream import ListStream

VOCAB = 97
FRAME = 2  # audio samples per frame: a frame is one token here
POLICY = ChunkPolicy(first_frames=2, growth=2.0, max_chunk_frames=4, left_context=1, lookahead=1, min_window=1)


def next_token(history) -> int:
    return (7 * int(sum(history)) + len(history)) % VOCAB


def expected_tokens(prompt, tokens: int) -> list[int]:
    history, out = list(prompt), []
    for _ in range(tokens):
        out.append(next_token(history))
        history.append(out[-1])
    return out


@dataclass(eq=False)
class ToyJob:
    name: str
    prompt: list[int]
    tokens: int  # tokens to generate, one frame each
    stream: ListStream = field(default_factory=ListStream)
    rows: int = 1  # a second row mirrors the first (like a guided request's row pair)
    fail_at: int | None = None  # consuming its logits raises once it has this many tokens
    prefix: int = 0  # its prompt's first `prefix` tokens are a cacheable prefix
    policy: ChunkPolicy = POLICY


class ToySlot(Slot):
    def __init__(self, job: ToyJob):
        super().__init__(job, job.rows, len(job.prompt) + job.tokens, Chunker(job.policy, job.tokens), True,
                         prompt_length=len(job.prompt), prefix=job.prompt[: job.prefix])
        self.prompt = np.array(job.prompt, np.int64)
        self.codes = np.zeros((1, job.tokens), np.int64)
        self.generated = 0
        self.last = -1
        self.rng = np.random.default_rng(0)


class ToyLM:
    """keys/values [1 layer, R, 1 head, T, 1]: a row's entries are the tokens it was fed."""

    def __init__(self):
        self.fail_next = False

    def step(self, input_ids, positions, logit_index, past_keys, past_values):
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("toy lm exploded")
        rows, width = input_ids.shape
        assert past_keys.shape[:3] == (1, rows, 1) and past_keys.shape[3] >= positions.max() + width
        logits = np.zeros((rows, VOCAB), np.float32)
        for r in range(rows):
            history = list(past_keys[0, r, 0, : positions[r], 0]) + list(input_ids[r, : logit_index[r] + 1])
            logits[r, next_token(history)] = 1.0
        new = input_ids.astype(np.float32)[None, :, None, :, None]  # padding too: the engine keeps what was fed
        return logits, new, new.copy()


class ToyFamily:
    name = "toy"
    frame_samples = FRAME
    kv_layout = (1, 1, 1)
    PAD = 0

    def __init__(self):
        self.lm = ToyLM()
        self.plans = []  # per step: (width, ((request, "prefill" | "decode", start, count), ...))

    def zeros(self, shape):
        return np.zeros(shape, np.float32)

    def admit(self, job: ToyJob) -> ToySlot:
        if not job.prompt:
            raise ValueError(f"{job.name}: a prompt needs at least one token")
        return ToySlot(job)

    def idle(self) -> None:
        pass

    def forward(self, plan):
        self.plans.append((plan.width, tuple((f.slot.job.name, "prefill" if f.prefill else "decode", f.start, f.count)
                                             for f in plan.feeds)))
        input_ids = np.full((plan.batch_rows, plan.width), self.PAD, np.int64)
        positions = np.empty(plan.batch_rows, np.int64)
        logit_index = np.empty(plan.batch_rows, np.int64)
        for feed in plan.feeds:
            input_ids[feed.rows, : feed.count] = feed.slot.prompt[feed.start : feed.end] if feed.prefill else feed.slot.last
            positions[feed.rows] = feed.start
            logit_index[feed.rows] = feed.count - 1
        return self.lm.step(input_ids, positions, logit_index, plan.past_keys, plan.past_values)

    def consume(self, slot: ToySlot, logits: np.ndarray) -> None:
        assert logits.shape == (slot.rows, VOCAB)
        if slot.generated == slot.job.fail_at:
            raise RuntimeError(f"{slot.job.name} cannot go on")
        token = int(sample(logits.sum(axis=0)[None], 0.0, 1, 1.0, slot.rng)[0])
        slot.codes[0, slot.generated] = token
        slot.generated += 1
        slot.tokens_out += 1
        slot.last = token
        slot.finished = slot.generated == slot.job.tokens
        while (window := slot.chunker.next_chunk(slot.generated)) is not None:
            slot.ready.append((window, slot.codes[:, window.window_start : window.window_end].copy()))


def decode_codes(codes_list):
    return [np.repeat(codes[0], FRAME).astype(np.float32) for codes, in codes_list]


def make_engine(**kwargs):
    family = ToyFamily()
    return Engine(family, decode_codes, **kwargs), family


def submit(engine, name, prompt, tokens, **fields) -> ToyJob:
    job = ToyJob(name, list(prompt), tokens, **fields)
    engine.submit(job)
    return job


def run_until_ended(engine, *jobs, limit=200):
    for _ in range(limit):
        if all(job.stream.ended for job in jobs):
            return
        engine.run_once(emit_inline=True)
    raise AssertionError(f"streams did not end within {limit} iterations")


def assert_served(job: ToyJob):
    """Its stream got all its tokens, exactly as generated alone, in ordered chunks with one final flag."""
    tokens = expected_tokens(job.prompt, job.tokens)
    stream = job.stream
    assert [kind for kind, _ in stream.events] == ["chunk"] * len(stream.chunks)
    assert [chunk.index for chunk in stream.chunks] == list(range(len(stream.chunks)))
    assert [chunk.final for chunk in stream.chunks] == [False] * (len(stream.chunks) - 1) + [True]
    assert stream.codes().tolist() == [tokens]
    assert [chunk.usage for chunk in stream.chunks] == [None] * (len(stream.chunks) - 1) + [(len(job.prompt), job.tokens)]
    np.testing.assert_array_equal(np.concatenate([c.audio for c in stream.chunks]), np.repeat(tokens, FRAME))


def test_the_toy_lm_reads_its_history_so_different_prompts_give_different_tokens():
    # otherwise the tests below could not tell requests (or a corrupted cache) apart
    assert expected_tokens([1, 2, 3], 6) == [45, 70, 76, 27, 23, 88]
    assert expected_tokens([4, 5, 6, 7, 8], 4) != expected_tokens([4, 5, 6, 7, 9], 4)


def test_requests_arriving_mid_run_join_the_running_batch_and_get_the_tokens_they_get_alone():
    engine, family = make_engine(max_slots=4)
    a = submit(engine, "a", [1, 2, 3], 8)
    for _ in range(3):
        engine.run_once(emit_inline=True)
    b = submit(engine, "b", [4, 5, 6, 7, 8], 4)
    for _ in range(2):
        engine.run_once(emit_inline=True)
    c = submit(engine, "c", [9, 10], 6)
    run_until_ended(engine, a, b, c)

    for job in (a, b, c):
        assert_served(job)
    assert family.plans == [
        (3, (("a", "prefill", 0, 3),)),
        (1, (("a", "decode", 3, 1),)),
        (1, (("a", "decode", 4, 1),)),
        (5, (("a", "decode", 5, 1), ("b", "prefill", 0, 5))),  # b joins: its whole prompt fits the budget
        (1, (("a", "decode", 6, 1), ("b", "decode", 5, 1))),
        (2, (("a", "decode", 7, 1), ("b", "decode", 6, 1), ("c", "prefill", 0, 2))),
        (1, (("a", "decode", 8, 1), ("b", "decode", 7, 1), ("c", "decode", 2, 1))),  # b's last step
        (1, (("a", "decode", 9, 1), ("c", "decode", 3, 1))),  # a's last step
        (1, (("c", "decode", 4, 1),)),
        (1, (("c", "decode", 5, 1),)),
        (1, (("c", "decode", 6, 1),)),
    ]
    stats = engine.stats
    assert (stats.steps, stats.request_steps, stats.max_batch_requests) == (11, 18, 3)
    assert (stats.admitted, stats.joined_running, stats.completed, stats.prefill_tokens) == (3, 2, 3, 10)
    assert (stats.active, stats.waiting, stats.failed, stats.cancelled) == (0, 0, 0, 0)
    assert engine.active == []


def test_prompts_are_prefilled_in_chunks_under_the_token_budget_while_other_rows_decode_every_step():
    engine, family = make_engine(budget=StepBudget(prefill_chunk=4, step_tokens=6))
    a = submit(engine, "a", [1, 2, 3], 12)
    for _ in range(2):
        engine.run_once(emit_inline=True)
    b = submit(engine, "b", range(10, 20), 3)
    for _ in range(4):
        engine.run_once(emit_inline=True)
    c = submit(engine, "c", [5, 4, 3, 2, 1], 2)
    run_until_ended(engine, a, b, c)

    for job in (a, b, c):
        assert_served(job)
    assert family.plans == [
        (3, (("a", "prefill", 0, 3),)),  # alone: min(prefill_chunk 4, 6 // 1 rows, 3 left)
        (1, (("a", "decode", 3, 1),)),
        (3, (("a", "decode", 4, 1), ("b", "prefill", 0, 3))),  # 2 rows: min(4, 6 // 2, 10 left)
        (3, (("a", "decode", 5, 1), ("b", "prefill", 3, 3))),
        (3, (("a", "decode", 6, 1), ("b", "prefill", 6, 3))),
        (1, (("a", "decode", 7, 1), ("b", "prefill", 9, 1))),  # b's last prompt token: its first answer
        (2, (("a", "decode", 8, 1), ("b", "decode", 10, 1), ("c", "prefill", 0, 2))),  # 3 rows: 6 // 3
        (2, (("a", "decode", 9, 1), ("b", "decode", 11, 1), ("c", "prefill", 2, 2))),
        (1, (("a", "decode", 10, 1), ("c", "prefill", 4, 1))),
        (1, (("a", "decode", 11, 1), ("c", "decode", 5, 1))),
        (1, (("a", "decode", 12, 1),)),
        (1, (("a", "decode", 13, 1),)),
    ]
    assert engine.stats.prefill_tokens == 3 + 10 + 5
    assert engine.stats.steps == 12


def test_a_request_of_two_rows_counts_both_against_the_budget_and_consumes_both_rows_logits():
    engine, family = make_engine(budget=StepBudget(prefill_chunk=8, step_tokens=6))
    pair = submit(engine, "pair", [3, 1, 4], 5, rows=2)
    engine.run_once(emit_inline=True)
    single = submit(engine, "single", [2, 7, 1, 8, 2, 8], 2)
    run_until_ended(engine, pair, single)

    for job in (pair, single):
        assert_served(job)
    assert family.plans[:4] == [
        (3, (("pair", "prefill", 0, 3),)),  # 2 rows: min(8, 6 // 2, 3 left)
        (2, (("pair", "decode", 3, 1), ("single", "prefill", 0, 2))),  # 3 rows: 6 // 3
        (2, (("pair", "decode", 4, 1), ("single", "prefill", 2, 2))),
        (2, (("pair", "decode", 5, 1), ("single", "prefill", 4, 2))),
    ]


@pytest.mark.parametrize("prefill_chunk, step_tokens, rows, left, width", [
    (32, 4096, 1, 100, 32), (32, 4096, 4, 5, 5), (32, 8, 4, 100, 2), (32, 3, 4, 100, 1), (1, 4096, 1, 100, 1)])
def test_the_width_is_the_prefill_chunk_under_the_budget_per_row_and_at_least_one(prefill_chunk, step_tokens, rows,
                                                                                   left, width):
    @dataclass
    class Row:
        rows: int
        cached: int
        prompt_length: int

        @property
        def prefilling(self):
            return self.cached < self.prompt_length

    slots = [Row(1, 0, left)] + [Row(1, 9, 4) for _ in range(rows - 1)]
    assert StepBudget(prefill_chunk, step_tokens).width(slots) == width
    assert StepBudget(prefill_chunk, step_tokens).width(slots[1:] or [Row(1, 9, 4)]) == 1  # nobody prefills


@pytest.mark.parametrize("field", ["prefill_chunk", "step_tokens"])
def test_a_budget_below_one_token_is_refused_naming_the_field(field):
    with pytest.raises(ValueError, match=f"^{field} must be >= 1, got 0$"):
        StepBudget(**{field: 0})


def test_a_cancelled_request_frees_its_slot_for_a_waiting_one_before_the_next_step_and_is_closed_once():
    engine, family = make_engine(max_slots=2)
    leaving = submit(engine, "leaving", [1, 2], 10, stream=ListStream(cancel_after_chunks=1))
    staying = submit(engine, "staying", [3, 4], 10)
    waiting = submit(engine, "waiting", [5], 3)
    while not leaving.stream.chunks:
        engine.run_once(emit_inline=True)
    assert family.plans[-1] == (1, (("leaving", "decode", 3, 1), ("staying", "decode", 3, 1)))
    engine.run_once(emit_inline=True)
    assert family.plans[-1] == (1, (("staying", "decode", 4, 1), ("waiting", "prefill", 0, 1)))
    run_until_ended(engine, staying, waiting)

    assert [kind for kind, _ in leaving.stream.events] == ["chunk", "close"]
    assert not any(chunk.final for chunk in leaving.stream.chunks)
    assert_served(staying)
    assert_served(waiting)
    assert (engine.stats.cancelled, engine.stats.completed, engine.stats.joined_running) == (1, 2, 1)


def test_a_request_cancelled_mid_prefill_or_while_waiting_gets_only_its_final_flag():
    engine, family = make_engine(max_slots=1, budget=StepBudget(prefill_chunk=2, step_tokens=2))
    prefilling = submit(engine, "prefilling", range(1, 9), 3)
    waiting = submit(engine, "waiting", [1], 3)
    engine.run_once(emit_inline=True)
    prefilling.stream.cancel = True
    waiting.stream.cancel = True
    after = submit(engine, "after", [2, 3], 3)
    run_until_ended(engine, after)

    assert [kind for kind, _ in prefilling.stream.events] == ["close"]
    assert [kind for kind, _ in waiting.stream.events] == ["close"]
    assert family.plans[:2] == [(2, (("prefilling", "prefill", 0, 2),)), (2, (("after", "prefill", 0, 2),))]
    assert_served(after)
    assert (engine.stats.admitted, engine.stats.cancelled) == (2, 2)


def test_a_stream_cancelled_after_its_last_step_but_before_emission_gets_exactly_one_final_flag():
    engine, _ = make_engine()
    job = submit(engine, "a", [1, 2, 3], 7)
    engine.run_once()
    while engine.active:  # generate everything; its chunks wait in the emitter's queue
        engine.run_once()
    job.stream.cancel = True
    engine.run_once(emit_inline=True)
    assert [kind for kind, _ in job.stream.events] == ["close"]


def test_capacity_is_slots_plus_queue_and_a_queued_request_takes_the_first_slot_that_frees():
    engine, family = make_engine(max_slots=2, max_queue=1)
    short = submit(engine, "short", [1], 2)
    long = submit(engine, "long", [2], 5)
    engine.run_once(emit_inline=True)
    queued = submit(engine, "queued", [3], 2)
    with pytest.raises(AtCapacity, match=r"^toy is at capacity: 2 streams generating and 1 waiting; retry later$"):
        submit(engine, "refused", [4], 2)
    assert engine.stats.waiting == 1
    run_until_ended(engine, short, long, queued)

    for job in (short, long, queued):
        assert_served(job)
    assert [names for _, names in family.plans[:3]] == [
        (("short", "prefill", 0, 1), ("long", "prefill", 0, 1)),
        (("short", "decode", 1, 1), ("long", "decode", 1, 1)),  # short's last step
        (("long", "decode", 2, 1), ("queued", "prefill", 0, 1)),  # queued takes its slot at once
    ]
    assert (engine.stats.admitted, engine.stats.completed, engine.stats.max_batch_requests) == (3, 3, 2)


def test_a_burst_before_any_step_is_capped_at_slots_plus_queue():
    engine, _ = make_engine(max_slots=1, max_queue=2)
    for name in "abc":
        submit(engine, name, [1], 1)
    with pytest.raises(AtCapacity, match="0 streams generating and 3 waiting"):
        submit(engine, "d", [1], 1)


def test_a_request_failing_on_its_logits_fails_alone_and_its_neighbours_are_served_exactly():
    engine, family = make_engine()
    a = submit(engine, "a", [1, 2, 3], 8)
    broken = submit(engine, "broken", [4, 5], 8, fail_at=5)
    c = submit(engine, "c", [6], 8)
    run_until_ended(engine, a, broken, c)

    assert_served(a)
    assert_served(c)
    events = broken.stream.events
    assert [kind for kind, _ in events] == ["chunk", "fail"]  # frames [0, 2) went out, [2, 5) never complete
    assert str(events[-1][1]) == "broken cannot go on"
    assert broken.stream.codes().tolist() == [expected_tokens([4, 5], 2)]
    assert all("broken" not in {name for name, *_ in feeds} for _, feeds in family.plans[6:])
    assert (engine.stats.failed, engine.stats.completed) == (1, 2)


def test_a_request_failing_admission_fails_alone():
    engine, _ = make_engine()
    a = submit(engine, "a", [1, 2], 4)
    empty = submit(engine, "empty", [], 4)
    run_until_ended(engine, a, empty)
    assert [(kind, str(error)) for kind, error in empty.stream.events] == [
        ("fail", "empty: a prompt needs at least one token")]
    assert_served(a)
    assert (engine.stats.admitted, engine.stats.failed) == (1, 1)


def test_a_failing_lm_call_fails_that_step_s_requests_and_the_engine_serves_the_next():
    engine, family = make_engine()
    a = submit(engine, "a", [1, 2], 6)
    b = submit(engine, "b", [3], 6)
    engine.run_once(emit_inline=True)
    family.lm.fail_next = True
    engine.run_once(emit_inline=True)
    for job in (a, b):
        assert [(kind, str(error)) for kind, error in job.stream.events] == [("fail", "toy lm exploded")]
    assert engine.active == [] and engine.stats.failed == 2
    c = submit(engine, "c", [1, 2], 6)
    run_until_ended(engine, c)
    assert_served(c)


def test_the_engine_threads_serve_requests_arriving_while_they_run():
    engine, _ = make_engine(max_slots=2)
    engine.start()
    try:
        jobs = [submit(engine, "a", [1, 2, 3], 9)]
        time.sleep(0.01)
        jobs += [submit(engine, name, [len(jobs) + i], 5) for i, name in enumerate("bc")]
        deadline = time.monotonic() + 5
        while not all(job.stream.ended for job in jobs) and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        engine.stop()
    for job in jobs:
        assert_served(job)
    assert not any(thread.is_alive() for thread in threading.enumerate() if thread.name.startswith("toy-"))


# --- the prefix cache: the toy LM reads a row's history from its keys, so a wrong restored entry is a wrong token

VOICE = [11, 12, 13, 14, 15, 16]  # a shared prefix, like a cloned voice's turn
ENTRY_BYTES_PER_TOKEN = 2 * 4  # keys + values, 1 layer x 1 head x 1 dim of float32, per row


def cached_engine(max_bytes=1 << 20, identity="toy-v1", **kwargs):
    return make_engine(prefix_cache=PrefixCache(max_bytes), model_identity=identity, **kwargs)


def prefix_stats(engine):
    s = engine.stats
    return s.prefix_hits, s.prefix_misses, s.prefix_tokens_saved, s.prefix_cache_bytes


def test_a_request_whose_prefix_is_cached_prefills_only_the_rest_and_gets_the_tokens_it_gets_alone():
    engine, family = cached_engine(max_slots=4)
    a = submit(engine, "a", VOICE + [1, 2], 6, prefix=len(VOICE))
    for _ in range(3):
        engine.run_once(emit_inline=True)
    b = submit(engine, "b", VOICE + [3], 5, prefix=len(VOICE))  # joins mid-flight: a hit
    c = submit(engine, "c", [21, 22, 23, 24, 5], 4, prefix=4)  # another voice: a miss
    run_until_ended(engine, a, b, c)

    for job in (a, b, c):
        assert_served(job)
    assert family.plans[:5] == [
        (8, (("a", "prefill", 0, 8),)),  # a miss: the whole prompt, the prefix stored once past it
        (1, (("a", "decode", 8, 1),)),
        (1, (("a", "decode", 9, 1),)),
        (5, (("a", "decode", 10, 1), ("b", "prefill", 6, 1), ("c", "prefill", 0, 5))),  # b starts past the prefix
        (1, (("a", "decode", 11, 1), ("b", "decode", 7, 1), ("c", "decode", 5, 1))),
    ]
    assert prefix_stats(engine) == (1, 2, 6, (6 + 4) * ENTRY_BYTES_PER_TOKEN)
    assert engine.stats.prefill_tokens == 8 + 1 + 5


def test_requests_of_one_prefix_admitted_together_prefill_it_once_the_others_wait_for_its_entry():
    engine, family = cached_engine(max_slots=4, budget=StepBudget(prefill_chunk=4, step_tokens=8))
    first = submit(engine, "first", VOICE + [1], 4, prefix=len(VOICE))
    second = submit(engine, "second", VOICE + [2, 3], 3, prefix=len(VOICE))
    other = submit(engine, "other", [7, 8], 4)  # no prefix: never waits
    run_until_ended(engine, first, second, other)

    for job in (first, second, other):
        assert_served(job)
    assert family.plans[:4] == [
        (4, (("first", "prefill", 0, 4), ("other", "prefill", 0, 2))),  # second waits: no rows this step
        (3, (("first", "prefill", 4, 3), ("other", "decode", 2, 1))),  # first passes the prefix: stored
        (2, (("first", "decode", 7, 1), ("second", "prefill", 6, 2), ("other", "decode", 3, 1))),
        (1, (("first", "decode", 8, 1), ("second", "decode", 8, 1), ("other", "decode", 4, 1))),
    ]
    assert prefix_stats(engine) == (1, 1, 6, 6 * ENTRY_BYTES_PER_TOKEN)


def test_a_waiting_request_prefills_the_prefix_itself_when_the_one_prefilling_it_is_cancelled():
    engine, family = cached_engine(budget=StepBudget(prefill_chunk=2, step_tokens=8))
    leaving = submit(engine, "leaving", VOICE + [1], 3, prefix=len(VOICE))
    staying = submit(engine, "staying", VOICE + [2], 3, prefix=len(VOICE))
    engine.run_once(emit_inline=True)
    leaving.stream.cancel = True
    run_until_ended(engine, leaving, staying)

    assert [kind for kind, _ in leaving.stream.events] == ["close"]
    assert_served(staying)
    assert family.plans[:3] == [(2, (("leaving", "prefill", 0, 2),)), (2, (("staying", "prefill", 0, 2),)),
                                (2, (("staying", "prefill", 2, 2),))]
    assert prefix_stats(engine) == (0, 2, 0, 6 * ENTRY_BYTES_PER_TOKEN)


def test_a_prefix_stored_under_another_model_identity_never_hits():
    shared = PrefixCache(1 << 20)
    old, _ = make_engine(prefix_cache=shared, model_identity="toy-v1")
    new, new_family = make_engine(prefix_cache=shared, model_identity="toy-v2")
    run_until_ended(old, submit(old, "a", VOICE + [1], 3, prefix=len(VOICE)))
    assert len(shared) == 1
    b = submit(new, "b", VOICE + [1], 3, prefix=len(VOICE))
    run_until_ended(new, b)
    assert_served(b)
    assert new_family.plans[0] == (7, (("b", "prefill", 0, 7),))
    assert prefix_stats(new)[:3] == (0, 1, 0)
    assert len(shared) == 2 and shared.bytes == 2 * 6 * ENTRY_BYTES_PER_TOKEN
    c = submit(old, "c", VOICE + [4], 3, prefix=len(VOICE))  # the old identity still finds its own
    run_until_ended(old, c)
    assert_served(c)
    assert prefix_stats(old)[:3] == (1, 1, 6)


def test_the_cache_keeps_within_its_bytes_under_200_voices_dropping_the_least_recently_used():
    entry = len(VOICE) * ENTRY_BYTES_PER_TOKEN  # 48 bytes
    engine, family = cached_engine(max_bytes=10 * entry + entry // 2)  # room for 10 entries, not 11
    cache = engine.prefix_cache
    for voice in range(200):
        job = submit(engine, f"v{voice}", [voice + 100] + VOICE[1:] + [voice % 7], 2, prefix=len(VOICE))
        run_until_ended(engine, job)
        assert_served(job)
        assert cache.bytes == sum(e.nbytes for e in cache.entries()) == min(voice + 1, 10) * entry
        assert engine.stats.prefix_cache_bytes == cache.bytes <= cache.max_bytes
    assert [int(e.tokens[0]) for e in cache.entries()] == list(range(290, 300))  # the 10 most recent
    again = submit(engine, "again", [299] + VOICE[1:] + [1], 2, prefix=len(VOICE))
    evicted = submit(engine, "evicted", [100] + VOICE[1:] + [1], 2, prefix=len(VOICE))
    run_until_ended(engine, again, evicted)
    assert_served(again)
    assert_served(evicted)
    assert prefix_stats(engine) == (1, 201, 6, 10 * entry)
    assert [int(e.tokens[0]) for e in cache.entries()][-2:] == [299, 100]  # 290 left for 100


def test_a_prefix_larger_than_the_whole_cache_is_never_stored_nor_counted():
    engine, family = cached_engine(max_bytes=len(VOICE) * ENTRY_BYTES_PER_TOKEN - 1)
    jobs = [submit(engine, name, VOICE + [1], 2, prefix=len(VOICE)) for name in "ab"]
    run_until_ended(engine, *jobs)
    for job in jobs:
        assert_served(job)
    assert family.plans[0] == (7, (("a", "prefill", 0, 7), ("b", "prefill", 0, 7)))  # nobody waits for it
    assert prefix_stats(engine) == (0, 0, 0, 0)


def test_a_prompt_that_is_all_prefix_still_feeds_its_last_token_and_pairs_of_rows_keep_their_own_entries():
    engine, family = cached_engine()
    run_until_ended(engine, submit(engine, "a", VOICE, 3, prefix=len(VOICE)))
    whole = submit(engine, "whole", VOICE, 4, prefix=len(VOICE))
    pair = submit(engine, "pair", VOICE, 4, rows=2, prefix=len(VOICE))  # another key: 2 rows
    run_until_ended(engine, whole, pair)
    assert_served(whole)
    assert_served(pair)
    assert family.plans[3] == (6, (("whole", "prefill", 5, 1), ("pair", "prefill", 0, 6)))
    assert prefix_stats(engine) == (1, 2, 5, 3 * len(VOICE) * ENTRY_BYTES_PER_TOKEN)


def test_a_prefix_longer_than_its_prompt_is_refused():
    with pytest.raises(ValueError, match="^a prefix of 3 tokens is longer than the 2-token prompt$"):
        Slot(ToyJob("bad", [1, 2], 2), 1, 4, Chunker(POLICY, 2), True, prompt_length=2, prefix=[1, 2, 3])


def test_a_streams_first_chunk_is_decoded_and_sent_ahead_of_a_backlog_of_later_chunks():
    """First audio first: with later chunks of running streams queued, a new stream's chunk 0 is decoded in a
    call of its own and sent before them; each stream's own chunks stay in order."""
    calls, sent = [], []

    def decode(codes_list):
        calls.append([int(codes[0, 0]) for codes, in codes_list])
        return [np.repeat(codes[0], FRAME).astype(np.float32) for codes, in codes_list]

    class Recorder(ListStream):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def send(self, chunk):
            sent.append((self.name, chunk.index))
            super().send(chunk)

    engine = Engine(ToyFamily(), decode)
    a, b = Recorder("a"), Recorder("b")
    window = lambda index, frame, final=False: ChunkWindow(index, frame, frame + 1, frame, frame + 1, final)  # noqa: E731
    code = lambda value: (np.array([[value]], np.int64),)  # noqa: E731
    engine._emit_all([(a, "chunk", (window(3, 3), code(13), True, None)),
                      (b, "chunk", (window(0, 0), code(20), True, None)),
                      (a, "chunk", (window(4, 4, final=True), code(14), True, (2, 5)))])
    assert calls == [[20], [13, 14]]  # b's first chunk alone, then the backlog in one batch
    assert sent == [("b", 0), ("a", 3), ("a", 4)]
    assert [c.usage for c in a.chunks] == [None, (2, 5)]

    calls.clear()
    engine._emit_all([(a, "chunk", (window(5, 5), code(15), True, None))])  # no first chunk: one call
    assert calls == [[15]]


def test_streams_decoding_in_a_busy_batch_get_a_shorter_first_chunk_and_a_stream_alone_does_not():
    busy = ChunkPolicy(first_frames=4, growth=2.0, max_chunk_frames=8, left_context=1, lookahead=1, min_window=1,
                       busy_first_frames=1, busy_streams=2)
    engine, _ = make_engine(max_slots=4)
    alone = submit(engine, "alone", [1, 2, 3], 9, policy=busy)
    run_until_ended(engine, alone)
    a, b = submit(engine, "a", [4, 5], 9, policy=busy), submit(engine, "b", [6, 7, 8], 9, policy=busy)
    run_until_ended(engine, a, b)

    for job in (alone, a, b):
        assert_served(job)
    frames = {job.name: [len(chunk.audio) // FRAME for chunk in job.stream.chunks] for job in (alone, a, b)}
    assert frames == {"alone": [4, 5], "a": [1, 8], "b": [1, 8]}  # later chunks keep the policy's sizes
