"""The speech family on the shared engine, driven step by step (no threads) on the tiny-random export:
served codes equal transformers' generate(), prefill interleaves with decoding, streaming is seamless."""

import numpy as np
import pytest

from tritone.ensemble import tensors as T
from tritone.ensemble.engine.chunker import ChunkPolicy
from tritone.ensemble.engine.onnx_runtime import OnnxCodecDecoder
from tritone.ensemble.orpheus.format import TOKENS_PER_FRAME
from tritone.ensemble.engine.request_fields import InvalidRequest
from tritone.ensemble.orpheus.pipeline import OrpheusPipeline, OrpheusSettings
from tests.list_stream import ListStream, run_until_ended
from tests.orpheus_reference import reference_prompt, reference_speech

POLICY = ChunkPolicy(first_frames=2, growth=2.0, max_chunk_frames=4, left_context=4, lookahead=3, min_window=1)
RATE = 24000
FRAME = 2048


@pytest.fixture
def pipeline(orpheus_repository):
    return OrpheusPipeline(orpheus_repository, OrpheusSettings(max_slots=4, max_queue=4, prefill_chunk=8, policy=POLICY))


def submit(pipeline, text, stream=None, **fields):
    params = pipeline.validate({T.TEXT: text, T.TOP_K: 1, T.RETURN_CODES: True, **fields})
    stream = stream or ListStream()
    pipeline.submit(params, stream)
    return stream


def reference_clip(pipeline, frames: int, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, pipeline.model.codebook_size, (TOKENS_PER_FRAME, frames))


def test_served_greedy_codes_equal_generate_for_concurrent_requests_joining_mid_flight(pipeline, orpheus_repository):
    clip = reference_clip(pipeline, 23)  # 2 s of a "voice": 161 audio tokens of prompt
    a = submit(pipeline, "The quick brown fox jumps over the lazy dog.", **{T.MAX_DURATION: 1.5})
    for _ in range(12):  # a is mid-generation when b and c arrive
        pipeline.engine.run_once(emit_inline=True)
    b = submit(pipeline, "Hello there.", **{T.VOICE: "tara", T.MAX_DURATION: 0.5})
    c = submit(pipeline, "She sells sea shells.", **{T.REFERENCE_TEXT: "A voice to clone.", T.REFERENCE_CODES: clip,
                                                       T.MAX_DURATION: 1.0, T.REPETITION_PENALTY: 1.0})
    run_until_ended(pipeline, a, b, c, limit=3000)
    assert pipeline.engine.stats.joined_running == 2
    assert pipeline.engine.stats.max_batch_requests == 3

    cases = [
        (a, reference_prompt(orpheus_repository, "The quick brown fox jumps over the lazy dog."), 17, 1.3),
        (b, reference_prompt(orpheus_repository, "Hello there.", voice="tara"), 5, 1.3),
        (c, reference_prompt(orpheus_repository, "She sells sea shells.", reference_text="A voice to clone.",
                             reference_codes=clip), 11, 1.0),
    ]
    lengths = []
    for stream, prompt, frame_limit, penalty in cases:
        expected = reference_speech(orpheus_repository, prompt, frame_limit, penalty)
        lengths.append((expected.shape[1], frame_limit))
        assert expected.shape[1] > 0
        np.testing.assert_array_equal(stream.codes(), expected)
        assert [chunk.index for chunk in stream.chunks] == list(range(len(stream.chunks)))
        assert [chunk.final for chunk in stream.chunks].count(True) == 1 and stream.chunks[-1].final
    assert any(frames < frame_limit for frames, frame_limit in lengths), lengths  # one ended by end_of_speech
    assert any(frames == frame_limit for frames, frame_limit in lengths), lengths  # one by max_duration


def test_streamed_audio_equals_the_one_shot_decode_at_every_chunk_boundary(pipeline, orpheus_repository):
    text = "Turn left at the next corner, then keep going straight for two miles."
    stream = submit(pipeline, text, **{T.MAX_DURATION: 3.0, T.REPETITION_PENALTY: 1.0})
    run_until_ended(pipeline, stream, limit=3000)
    codes = stream.codes()
    audio = np.concatenate([chunk.audio for chunk in stream.chunks])
    assert audio.shape == (codes.shape[1] * FRAME,)
    decode = OnnxCodecDecoder(orpheus_repository / T.SNAC_DECODER / "1" / T.ONNX_FILE)
    whole = decode(codes[None])[0]
    boundaries = np.cumsum([chunk.audio.size for chunk in stream.chunks])[:-1]
    assert len(boundaries) >= 4
    for boundary in boundaries:  # two frames either side of each seam
        seam = slice(boundary - 2 * FRAME, boundary + 2 * FRAME)
        assert np.max(np.abs(audio[seam] - whole[seam])) < 1e-4, boundary
    assert np.max(np.abs(audio - whole)) < 1e-4


@pytest.mark.parametrize("step_tokens, width", [(4096, 8), (8, 4)])  # 2 rows: width = min(8, step_tokens // 2)
def test_a_long_prompt_is_prefilled_in_chunks_while_other_rows_decode_every_step(orpheus_repository, step_tokens,
                                                                                 width):
    pipeline = OrpheusPipeline(orpheus_repository, OrpheusSettings(max_slots=4, max_queue=4, prefill_chunk=8,
                                                                step_tokens=step_tokens, policy=POLICY))
    engine = pipeline.engine
    a = submit(pipeline, "Turn left at the next corner, then keep going straight for two miles.",
               **{T.MAX_DURATION: 5.0, T.REPETITION_PENALTY: 1.0})
    for _ in range(30):
        engine.run_once(emit_inline=True)
    clip = reference_clip(pipeline, 60)  # 5 s reference: 420 audio tokens
    c = submit(pipeline, "Cloned.", **{T.REFERENCE_TEXT: "Five seconds of someone talking.", T.REFERENCE_CODES: clip,
                                      T.MAX_DURATION: 0.5})
    engine.run_once(emit_inline=True)  # c admitted: its first chunk goes in
    [slot_a, slot_c] = engine.active
    prompt = len(slot_c.prompt)
    prefill_steps = 0
    while slot_c.prefilling:
        before = slot_a.generated
        engine.run_once(emit_inline=True)
        assert slot_a.generated == before + 1  # a decodes at every step of c's prefill
        prefill_steps += 1
    assert prefill_steps == -(-prompt // width) - 1
    assert engine.stats.prefill_tokens >= prompt
    run_until_ended(pipeline, a, c, limit=3000)
    assert not a.failed and not c.failed


def test_a_reference_clip_is_encoded_once_by_content(pipeline):
    clip = np.random.default_rng(1).uniform(-0.5, 0.5, 2 * RATE).astype(np.float32)
    fields = {T.REFERENCE_TEXT: "Hello.", T.REFERENCE_AUDIO: clip}
    first = pipeline.prompt(pipeline.validate({T.TEXT: "One.", **fields}))
    second = pipeline.prompt(pipeline.validate({T.TEXT: "One.", **fields}))
    np.testing.assert_array_equal(first, second)
    assert pipeline.references.encoded == 1
    pipeline.prompt(pipeline.validate({T.TEXT: "One.", **fields, T.REFERENCE_AUDIO: clip * 0.5}))
    assert pipeline.references.encoded == 2
    frames = -(-clip.size // FRAME)
    assert pipeline.references.codes(clip).shape == (TOKENS_PER_FRAME, frames)


def test_cancelling_during_prefill_frees_the_slot_and_closes_the_stream(pipeline):
    clip = reference_clip(pipeline, 40)
    stream = submit(pipeline, "Never mind.", **{T.REFERENCE_TEXT: "Hi.", T.REFERENCE_CODES: clip})
    pipeline.engine.run_once(emit_inline=True)
    assert pipeline.engine.active[0].prefilling
    stream.cancel = True
    pipeline.engine.run_once(emit_inline=True)
    assert pipeline.engine.active == []
    assert [kind for kind, _ in stream.events] == ["close"]


@pytest.mark.parametrize(
    "fields, field, message",
    [
        ({T.TEXT: " "}, T.TEXT, "must be non-empty text"),
        ({T.TEXT: "x" * 4097}, T.TEXT, "is 4097 characters; the limit is 4096"),
        ({T.VOICE: "alloy"}, T.VOICE, "'alloy' is not a speaker of this checkpoint; it knows tara, leah, jess, leo, dan, mia, zac, zoe"),
        ({T.REFERENCE_TEXT: "hi"}, T.REFERENCE_TEXT, "needs the clip it transcribes"),
        ({T.REFERENCE_CODES: np.zeros((7, 20), np.int64)}, T.REFERENCE_TEXT, "is required with a reference clip"),
        ({T.REFERENCE_TEXT: "hi", T.REFERENCE_CODES: np.zeros((4, 20), np.int64)}, T.REFERENCE_CODES,
         "must have shape [7, frames >= 1], got [4, 20]"),
        ({T.REFERENCE_TEXT: "hi", T.REFERENCE_CODES: np.full((7, 20), 64, np.int64)}, T.REFERENCE_CODES,
         "values must be in [0, 64), got 64..64"),
        ({T.REFERENCE_TEXT: "hi", T.REFERENCE_AUDIO: np.zeros(RATE // 2, np.float32)}, T.REFERENCE_AUDIO,
         "is 0.50 s at 24000 Hz; a reference clip must last 1 to 30 s"),
        ({T.REFERENCE_TEXT: "hi", T.REFERENCE_AUDIO: np.zeros(RATE, np.float32),
          T.REFERENCE_CODES: np.zeros((7, 2), np.int64)}, T.REFERENCE_AUDIO, "give either"),
        ({T.MAX_DURATION: 0.0}, T.MAX_DURATION, "must be in (0, 60] seconds, got 0"),
        ({T.REPETITION_PENALTY: 0.5}, T.REPETITION_PENALTY, "must be in [1, 3] (1 disables it), got 0.5"),
        ({T.TOP_P: 0.0}, T.TOP_P, "must be in (0, 1]"),
    ],
)
def test_bad_requests_are_refused_naming_the_field(pipeline, fields, field, message):
    with pytest.raises(InvalidRequest) as error:
        pipeline.validate({T.TEXT: "Hello.", **fields})
    assert error.value.field == field
    assert message in str(error.value)


def test_a_prompt_that_leaves_no_room_in_the_context_is_refused_naming_text(pipeline):
    clip = reference_clip(pipeline, 350)  # 30 s: 2450 tokens of the tiny model's 4096
    params = pipeline.validate({T.TEXT: "word " * 250, T.REFERENCE_TEXT: "w " * 500, T.REFERENCE_CODES: clip})
    with pytest.raises(InvalidRequest) as error:
        pipeline.submit(params, ListStream())
    assert error.value.field == T.TEXT
    assert "leaves less than 1 s of speech" in str(error.value)
    assert pipeline.engine.stats.waiting == 0


def test_the_torch_runtime_for_the_gpu_target_serves_the_same_codes(orpheus_repository):
    """The GPU target runs the LM step's torch module with the cache on the device; on the CPU here."""

    def run(settings):
        pipeline = OrpheusPipeline(orpheus_repository, settings)
        streams = [submit(pipeline, "Hello there, how are you doing today?", **{T.MAX_DURATION: 1.0}),
                   submit(pipeline, "She sells sea shells.", **{T.VOICE: "leo", T.MAX_DURATION: 0.5})]
        run_until_ended(pipeline, *streams, limit=3000)
        return [stream.codes() for stream in streams]

    onnx_codes = run(OrpheusSettings(policy=POLICY, prefill_chunk=8))
    torch_codes = run(OrpheusSettings(policy=POLICY, prefill_chunk=8, lm_runtime="torch", device="cpu",
                                     dtype="float32"))
    for ours, theirs in zip(torch_codes, onnx_codes):
        np.testing.assert_array_equal(ours, theirs)
