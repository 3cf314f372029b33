"""The speech family on the shared engine, driven step by step (no threads) on the tiny-random export:
served codes equal transformers' generate(), prefill interleaves with decoding, streaming is seamless."""

import numpy as np
import pytest

from tritone.ensemble import tensors as T
from tritone.ensemble.engine.chunker import ChunkPolicy
from tritone.ensemble.engine.onnx_runtime import OnnxCodecDecoder
from tritone.ensemble.orpheus.format import TOKENS_PER_FRAME
from tritone.ensemble.engine.request_fields import InvalidRequest
from tritone.ensemble.orpheus.metadata import OrpheusMetadata
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
    assert pipeline.references.get(clip).shape == (TOKENS_PER_FRAME, frames)


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


# --- the prefix cache: a cloned voice's turn prefilled once --------------------------------------------------

RUNTIMES = {"onnxruntime": {}, "torch": {"lm_runtime": "torch", "device": "cpu", "dtype": "float32"}}
VOICE = {T.REFERENCE_TEXT: "A voice to clone."}


def cloned(pipeline, text, clip, stream=None, **fields):
    return submit(pipeline, text, stream, **{**VOICE, T.REFERENCE_CODES: clip}, **fields)


def voice_codes(repository, frames: int, seed: int) -> np.ndarray:
    codebook = OrpheusMetadata.load(repository / T.ORPHEUS / "1").codebook_size
    return np.random.default_rng(seed).integers(0, codebook, (TOKENS_PER_FRAME, frames))


def voice_prefix(pipeline, clip) -> int:
    prompt = pipeline.prompt(pipeline.validate({T.TEXT: "x", **VOICE, T.REFERENCE_CODES: clip}))
    return pipeline.format.voice_prefix_length(prompt)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_greedy_codes_with_the_prefix_cache_equal_codes_without_it_for_cached_requests_joining_mid_flight(
        orpheus_repository, runtime):
    voice, other_voice = voice_codes(orpheus_repository, 23, 3), voice_codes(orpheus_repository, 9, 4)

    def run(prefix_cache_bytes):
        pipeline = OrpheusPipeline(orpheus_repository, OrpheusSettings(
            max_slots=5, prefill_chunk=8, policy=POLICY, prefix_cache_bytes=prefix_cache_bytes, **RUNTIMES[runtime]))
        engine = pipeline.engine
        a = submit(pipeline, "The quick brown fox jumps over the lazy dog.", **{T.MAX_DURATION: 1.5})
        for _ in range(6):
            engine.run_once(emit_inline=True)
        b = cloned(pipeline, "She sells sea shells.", voice, **{T.MAX_DURATION: 1.0})  # miss: prefills the voice
        c = cloned(pipeline, "By the sea shore.", voice, **{T.MAX_DURATION: 0.8})  # same voice, same step: waits
        for _ in range(40):
            engine.run_once(emit_inline=True)
        d = cloned(pipeline, "Hello there, how are you?", voice, **{T.MAX_DURATION: 0.8})  # joins mid-flight: hit
        e = cloned(pipeline, "Another voice.", other_voice, **{T.MAX_DURATION: 0.5})  # miss
        streams = [a, b, c, d, e]
        run_until_ended(pipeline, *streams, limit=3000)
        assert not any(stream.failed for stream in streams)
        return pipeline, [stream.codes() for stream in streams]

    plain, expected = run(0)
    cached, served = run(64 << 20)
    for ours, theirs in zip(served, expected):
        np.testing.assert_array_equal(ours, theirs)
    assert [codes.shape[1] for codes in served] == [codes.shape[1] for codes in expected]
    saved = voice_prefix(cached, voice)
    transcript = cached.tokenizer(VOICE[T.REFERENCE_TEXT])["input_ids"]
    assert saved == len(transcript) + 5 + 23 * TOKENS_PER_FRAME + 2 + 2  # the voice's turn, then start_of_human, BOS
    stats = cached.engine.stats
    assert (stats.prefix_hits, stats.prefix_misses, stats.prefix_tokens_saved) == (2, 2, 2 * saved)
    assert stats.prefill_tokens == plain.engine.stats.prefill_tokens - 2 * saved
    entries = saved + voice_prefix(cached, other_voice)
    assert stats.prefix_cache_bytes == cached.engine.prefix_cache.bytes == entries * cached.model.kv_bytes_per_token(4)
    assert plain.engine.prefix_cache is None and plain.engine.stats.prefix_misses == 0
    prompt = reference_prompt(orpheus_repository, "Hello there, how are you?",
                              reference_text=VOICE[T.REFERENCE_TEXT], reference_codes=voice)
    np.testing.assert_array_equal(served[3], reference_speech(orpheus_repository, prompt, 9, 1.3))  # transformers' too


def test_another_runtime_or_checkpoint_never_reads_the_cached_prefixes(orpheus_repository, tmp_path):
    from tritone.ensemble.engine.prefix_cache import files_digest

    onnx = OrpheusPipeline(orpheus_repository, OrpheusSettings(policy=POLICY, prefix_cache_bytes=1 << 20))
    again = OrpheusPipeline(orpheus_repository, OrpheusSettings(policy=POLICY, prefix_cache_bytes=1 << 20))
    torch = OrpheusPipeline(orpheus_repository, OrpheusSettings(policy=POLICY, prefix_cache_bytes=1 << 20,
                                                                **RUNTIMES["torch"]))
    assert onnx.engine.model_identity == again.engine.model_identity != torch.engine.model_identity
    assert onnx.engine.model_identity.startswith("onnxruntime/")
    assert torch.engine.model_identity.startswith("torch/cpu/torch.float32/")
    clip = voice_codes(orpheus_repository, 5, 5)
    run_until_ended(onnx, cloned(onnx, "One.", clip, **{T.MAX_DURATION: 0.3}))
    assert len(onnx.engine.prefix_cache) == 1
    torch.engine.prefix_cache = onnx.engine.prefix_cache  # one cache, two models: entries never cross
    run_until_ended(torch, cloned(torch, "Two.", clip, **{T.MAX_DURATION: 0.3}))
    assert (torch.engine.stats.prefix_hits, torch.engine.stats.prefix_misses) == (0, 1)
    assert len(onnx.engine.prefix_cache) == 2

    lm = orpheus_repository / T.ORPHEUS / "1" / "lm_step.onnx"
    copy = tmp_path / "lm_step.onnx"
    copy.write_bytes(lm.read_bytes())
    assert files_digest([copy]) == files_digest([lm])  # the same file elsewhere: the same model
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 1
    copy.write_bytes(bytes(data))
    assert files_digest([copy]) != files_digest([lm])  # one bit of another checkpoint: another model


def test_the_prefix_cache_keeps_within_its_bytes_under_200_cloned_voices(orpheus_repository):
    pipeline = OrpheusPipeline(orpheus_repository, OrpheusSettings(max_slots=8, max_queue=8, policy=POLICY))
    per_token = pipeline.model.kv_bytes_per_token(4)
    entry = voice_prefix(pipeline, voice_codes(orpheus_repository, 1, 1)) * per_token  # each voice: 1 frame
    pipeline = OrpheusPipeline(orpheus_repository, OrpheusSettings(max_slots=8, max_queue=8, policy=POLICY,
                                                                   prefix_cache_bytes=12 * entry + entry // 2))
    cache = pipeline.engine.prefix_cache
    voices = [np.array([[v % 64], [v // 64], *[[0]] * 5], np.int64) for v in range(200)]
    assert len({voice.tobytes() for voice in voices}) == 200
    for batch in range(25):
        streams = [cloned(pipeline, "Hi.", voices[v], **{T.MAX_DURATION: 0.1})
                   for v in range(batch * 8, batch * 8 + 8)]
        run_until_ended(pipeline, *streams, limit=500)
        assert not any(stream.failed for stream in streams)
        assert cache.bytes == sum(e.nbytes for e in cache.entries()) == min(8 * (batch + 1), 12) * entry
        assert pipeline.engine.stats.prefix_cache_bytes == cache.bytes <= cache.max_bytes
    stats = pipeline.engine.stats
    assert (stats.prefix_hits, stats.prefix_misses, stats.prefix_tokens_saved) == (0, 200, 0)
    kept = {e.tokens.tobytes() for e in cache.entries()}
    newest = [pipeline.prompt(pipeline.validate({T.TEXT: "Hi.", **VOICE, T.REFERENCE_CODES: voices[v]}))
              for v in range(188, 200)]
    assert kept == {p[: pipeline.format.voice_prefix_length(p)].tobytes() for p in newest}
    stream = cloned(pipeline, "Again.", voices[199], **{T.MAX_DURATION: 0.1})
    run_until_ended(pipeline, stream)
    assert (stats.prefix_hits, stats.prefix_tokens_saved) == (1, entry // per_token)


def test_the_config_states_the_speakers_of_the_export_it_serves(orpheus_repository):
    from tritone.ensemble.orpheus.spec import LIMITS, SPEAKERS

    served = OrpheusPipeline(orpheus_repository, OrpheusSettings(speakers=LIMITS["speakers"]))  # as the spec renders
    assert served.model.voices == SPEAKERS
    with pytest.raises(ValueError) as refused:
        OrpheusPipeline(orpheus_repository, OrpheusSettings(speakers="ava,bo"))
    assert str(refused.value) == (f"the export in {orpheus_repository / T.ORPHEUS / '1'} has the speakers "
                                  f"{list(SPEAKERS)} but the orpheus config declares speakers ['ava', 'bo']")
