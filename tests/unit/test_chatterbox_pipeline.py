"""The Chatterbox family on the shared engine, driven step by step (no threads) on the tiny-random export: greedy
codes equal the reference package's loop, streamed audio joins like the one-shot decode, a seeded request is
reproducible whatever shares its steps, a clip becomes its voice once, and bad input is refused by name."""

import numpy as np
import pytest

from tests.chatterbox_reference import reference_greedy
from tests.list_stream import ListStream, run_until_ended
from tritone.ensemble import tensors as T
from tritone.ensemble.chatterbox.codec import (FLOW_LEFT_CONTEXT_TOKENS, FLOW_LOOKAHEAD_TOKENS, STREAMED_AUDIO_BOUND,
                                              ChatterboxCodec, CodecInputs, OnnxCodec)
from tritone.ensemble.chatterbox.pipeline import ChatterboxPipeline, ChatterboxSettings
from tritone.ensemble.engine.chunker import ChunkPolicy, ChunkWindow
from tritone.ensemble.engine.request_fields import InvalidRequest

RATE, FRAME = 24000, 960
# small chunks (many seams), the served context
POLICY = ChunkPolicy(first_frames=4, growth=2.0, max_chunk_frames=8, left_context=FLOW_LEFT_CONTEXT_TOKENS,
                     lookahead=FLOW_LOOKAHEAD_TOKENS, min_window=4)


@pytest.fixture(scope="module")
def repository(tiny_model_repository):
    return tiny_model_repository


@pytest.fixture(scope="module")
def reference(repository):
    from tritone.export.chatterbox.reference import load_reference

    return load_reference(repository / T.CHATTERBOX / "1" / "checkpoint")


def make_pipeline(repository, **settings):
    return ChatterboxPipeline(repository, ChatterboxSettings(max_slots=4, max_queue=4, policy=POLICY, **settings))


@pytest.fixture
def pipeline(repository):
    return make_pipeline(repository)


def submit(pipeline, text, **fields):
    params = pipeline.validate({T.TEXT: text, T.RETURN_CODES: True, **fields})
    stream = ListStream()
    pipeline.submit(params, stream)
    return stream


def clip(seconds: float, seed: int = 5) -> np.ndarray:
    from tritone.export.chatterbox.tiny import synthetic_voice

    return synthetic_voice(seconds=seconds, seed=seed)


GREEDY = {T.TEMPERATURE: 0.0, T.REPETITION_PENALTY: 1.0}  # the reference loop: argmax, no penalty


@pytest.mark.parametrize("runtime, prefill_chunk", [("onnxruntime", 32), ("onnxruntime", 16), ("torch", 16)])
def test_greedy_codes_equal_the_reference_loop_for_requests_joining_mid_flight(repository, reference, runtime,
                                                                               prefill_chunk):
    pipeline = make_pipeline(repository, lm_runtime=runtime, dtype="float32", prefill_chunk=prefill_chunk)
    voice_clip = clip(4.0)
    a = submit(pipeline, "The quick brown fox jumps over the lazy dog.", **GREEDY, **{T.MAX_DURATION: 1.2})
    for _ in range(8):  # a is generating when b arrives
        pipeline.engine.run_once(emit_inline=True)
    b = submit(pipeline, "Hello there.", **GREEDY, **{T.REFERENCE_AUDIO: voice_clip, T.EXAGGERATION: 0.9,
                                                     T.CFG_WEIGHT: 0.3, T.MAX_DURATION: 0.8})
    run_until_ended(pipeline, a, b, limit=500)
    assert pipeline.engine.stats.joined_running == 1 and pipeline.engine.stats.max_batch_requests == 2
    model = pipeline.model
    for stream, text, voice, exaggeration, cfg, limit in (
            (a, "The quick brown fox jumps over the lazy dog.", pipeline.voices["default"], 0.5, 0.5, 30),
            (b, "Hello there.", pipeline.references.get(voice_clip), 0.9, 0.3, 20)):
        tokens, _ = reference_greedy(reference.t3, voice.speaker_emb, voice.prompt_speech_tokens, exaggeration,
                                     pipeline.text_ids(text), cfg, limit)
        if model.stop_speech in tokens:
            tokens = tokens[: tokens.index(model.stop_speech)]
        expected = [t for t in tokens if t < model.speech_codes]
        assert not stream.failed
        assert stream.codes()[0].tolist() == expected
        assert sum(chunk.audio.size for chunk in stream.chunks) == FRAME * len(expected)
        assert [chunk.final for chunk in stream.chunks].count(True) == 1 and stream.chunks[-1].final


def test_text_ids_are_the_reference_packages(pipeline, reference):
    from chatterbox.tts import punc_norm

    for text in ("hello world", "Wait... what?  Really\u2026 yes; no: \u201cmaybe\u201d", "It's fine - really",
                 "A sentence that ends without a stop"):
        ids = reference.tokenizer.text_to_tokens(punc_norm(text))[0].tolist()
        assert pipeline.text_ids(text).tolist() == [pipeline.model.start_text, *ids, pipeline.model.stop_text], text


def test_streamed_audio_equals_the_one_shot_decode_of_its_tokens(pipeline, repository):
    stream = submit(pipeline, "Turn left at the next corner, then keep going.", **{T.SEED: 3, T.MAX_DURATION: 1.6})
    run_until_ended(pipeline, stream, limit=500)
    codes = stream.codes()
    audio = np.concatenate([chunk.audio for chunk in stream.chunks])
    assert codes.shape[1] >= 12 and len(stream.chunks) >= 3
    assert audio.shape == (FRAME * codes.shape[1],)
    # the one-shot decode: the whole stream in one window, with the stream's voice and noise seed
    slot = type("Slot", (), {"voice": pipeline.voices["default"], "serial": 0, "noise_seed": 3})()
    window = ChunkWindow(0, 0, codes.shape[1], 0, codes.shape[1], final=True)
    whole = ChatterboxCodec(OnnxCodec(repository)).each([(codes, *CodecInputs()(slot, window))])[0]
    assert whole.shape == audio.shape
    assert np.max(np.abs(audio - whole)) < STREAMED_AUDIO_BOUND, np.max(np.abs(audio - whole))  # 5.8e-3 measured


def test_a_seeded_request_is_reproducible_whatever_shares_its_steps(repository):
    fields = {T.SEED: 11, T.MAX_DURATION: 1.0}
    alone_pipeline = make_pipeline(repository)
    alone = submit(alone_pipeline, "Seeded words.", **fields)
    run_until_ended(alone_pipeline, alone)
    shared_pipeline = make_pipeline(repository)
    other = submit(shared_pipeline, "Another request beside it, longer.", **{T.SEED: 4, T.MAX_DURATION: 1.6})
    shared_pipeline.engine.run_once(emit_inline=True)
    shared = submit(shared_pipeline, "Seeded words.", **fields)
    run_until_ended(shared_pipeline, other, shared)
    np.testing.assert_array_equal(alone.codes(), shared.codes())
    np.testing.assert_allclose(np.concatenate([c.audio for c in alone.chunks]),
                               np.concatenate([c.audio for c in shared.chunks]), atol=1e-5)


def test_a_voice_s_conditioning_is_prefilled_once_and_codes_stay_the_same(repository):
    plain = make_pipeline(repository)
    cached = make_pipeline(repository, prefix_cache_bytes=1 << 26)
    voice_clip = clip(3.0, seed=6)
    requests = [("First sentence here.", {T.REFERENCE_AUDIO: voice_clip}), ("Second one.", {T.REFERENCE_AUDIO: voice_clip}),
                ("Louder now.", {T.REFERENCE_AUDIO: voice_clip, T.EXAGGERATION: 1.2}), ("Built in.", {})]
    for text, fields in requests:
        fields = {**GREEDY, T.MAX_DURATION: 0.4, **fields}
        expected, served = submit(plain, text, **fields), submit(cached, text, **fields)
        run_until_ended(plain, expected)
        run_until_ended(cached, served)
        np.testing.assert_array_equal(served.codes(), expected.codes())
    stats = cached.engine.stats
    # the clip's voice at 0.5 (stored, then hit), at 1.2 (another entry), the built-in voice (another)
    assert (stats.prefix_misses, stats.prefix_hits) == (3, 1)
    assert stats.prefix_tokens_saved == 34  # the conditioning: speaker, 32 perceiver tokens, emotion
    assert plain.engine.stats.prefix_hits == 0


def test_without_guidance_a_request_takes_one_row(pipeline):
    stream = submit(pipeline, "No guidance.", **{T.CFG_WEIGHT: 0.0, T.SEED: 1, T.MAX_DURATION: 0.6})
    pipeline.engine.run_once(emit_inline=True)
    assert [slot.rows for slot in pipeline.engine.active] == [1]
    run_until_ended(pipeline, stream)
    assert not stream.failed and stream.chunks[-1].final


def test_a_reference_clip_becomes_its_voice_once_by_content(pipeline):
    voice_clip = clip(2.0, seed=8)
    params = pipeline.validate({T.TEXT: "One.", T.REFERENCE_AUDIO: voice_clip})
    first, second = pipeline.voice(params), pipeline.voice(params)
    assert first is second and pipeline.references.encoded == 1
    pipeline.voice(pipeline.validate({T.TEXT: "One.", T.REFERENCE_AUDIO: voice_clip * 0.5}))
    assert pipeline.references.encoded == 2
    assert first.prompt_mel.shape == (2 * first.prompt_tokens.size, 80) and first.xvector.shape == (192,)


@pytest.mark.parametrize("fields, message", [
    ({T.EXAGGERATION: 2.5}, "exaggeration: must be in [0, 2] (emotion exaggeration, 0.5 is neutral), got 2.5"),
    ({T.CFG_WEIGHT: -0.1}, "cfg_weight: must be in [0, 2] (classifier-free guidance, 0 disables it), got -0.1"),
    ({T.MIN_P: 1.5}, "min_p: must be in [0, 1] (0 disables it), got 1.5"),
    ({T.VOICE: "tara"}, "voice: 'tara' is not a built-in voice of this checkpoint; it has default"),
    ({T.VOICE: "default", T.REFERENCE_AUDIO: np.zeros(RATE, np.float32)},
     "voice: give either voice or reference_audio, not both"),
    ({T.REFERENCE_AUDIO: np.zeros(RATE // 2, np.float32)},
     "reference_audio: is 0.50 s at 24000 Hz; a reference clip must last 1 to 30 s"),
    ({T.MAX_DURATION: 41.0}, "max_duration: must be in (0, 40] seconds, got 41"),
])
def test_bad_fields_are_refused_by_name(pipeline, fields, message):
    with pytest.raises(InvalidRequest) as refused:
        pipeline.validate({T.TEXT: "Hi.", **fields})
    assert str(refused.value) == message


def test_text_over_the_token_limit_is_refused_before_anything_is_queued(repository):
    pipeline = make_pipeline(repository)
    params = pipeline.validate({T.TEXT: "word " * 400})
    with pytest.raises(InvalidRequest, match=r"^text: is \d+ tokens long; the limit is 600 \(send a sentence at a time\)"):
        pipeline.submit(params, ListStream())
    assert pipeline.engine.stats.waiting == 0 and not pipeline.engine.active
