"""Speech (Orpheus format + SNAC) served by a real tritonserver on CPU (tiny-random weights), over real gRPC."""

from __future__ import annotations

import asyncio
import time
import urllib.request

import numpy as np
import pytest

from tritone.client import GenerationError, SpeechRequest, stream_speech
from tritone.client.metrics import read_engine_metrics
from tritone.ensemble import tensors as T
from tritone.ensemble.engine.onnx_runtime import OnnxCodecDecoder
from tests.orpheus_reference import reference_prompt, reference_speech

pytestmark = pytest.mark.integration

RATE, FRAME = 24000, 2048
LONG_TEXT = "Turn left at the next corner, then keep going straight for two miles."
# SNAC decoded in windows with 3 frames of left context and 3 of lookahead equals the one-shot
# decode to float rounding (the decoder sees about 2.5 frames either way; see export/orpheus_graphs.py).
STREAMING_TOLERANCE = 1e-4


async def collect(url, request: SpeechRequest, first_chunk: asyncio.Event | None = None, times: list | None = None):
    chunks = []
    async for chunk in stream_speech(url, request, max_chars=None):
        chunks.append(chunk)
        if times is not None:
            times.append(time.perf_counter())
        if first_chunk is not None:
            first_chunk.set()
    return chunks


def greedy(text: str, max_duration: float, penalty: float = 1.3, **fields) -> SpeechRequest:
    return SpeechRequest(text=text, max_duration=max_duration, top_k=1, repetition_penalty=penalty,
                         return_codes=True, **fields)


def codes_of(chunks) -> np.ndarray:
    return np.concatenate([chunk.codes for chunk in chunks], axis=1)


def clip_codes(frames: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 64, (7, frames))


def test_served_greedy_codes_equal_generate_for_concurrent_requests_joining_mid_flight(
    triton_stack, tiny_model_repository
):
    url = triton_stack.grpc_url
    clip = clip_codes(30)
    first = greedy(LONG_TEXT, 10.0, penalty=1.0)  # long enough that the joiners arrive mid-generation anywhere
    joiners = [
        greedy("Hello there.", 0.6, voice="tara"),
        greedy("She sells sea shells.", 1.5, reference_text="A voice to clone.", reference_codes=clip),
        greedy("Thank you so much for listening, see you next time!", 2.0),
    ]
    before = read_engine_metrics(triton_stack.metrics_url, T.ORPHEUS)

    async def scenario():
        started = asyncio.Event()
        running = asyncio.create_task(collect(url, first, started))
        await started.wait()  # the first stream is mid-generation: the others join its batch
        results = await asyncio.gather(*(collect(url, request) for request in joiners))
        return [await running, *results]

    results = asyncio.run(scenario())
    after = read_engine_metrics(triton_stack.metrics_url, T.ORPHEUS)

    for request, chunks in zip([first, *joiners], results):
        prompt = reference_prompt(tiny_model_repository, request.text, request.voice, request.reference_text,
                                  request.reference_codes)
        expected = reference_speech(tiny_model_repository, prompt, int(request.max_duration * RATE / FRAME),
                                    request.repetition_penalty)
        np.testing.assert_array_equal(codes_of(chunks), expected)
        assert sum(chunk.audio.size for chunk in chunks) == expected.shape[1] * FRAME
        assert {chunk.sample_rate for chunk in chunks} == {RATE}
    assert after["tritone_requests_joined_running_total"] - before["tritone_requests_joined_running_total"] >= 2
    assert after["tritone_decode_batch_requests_max"] >= 3


def test_streamed_audio_equals_the_one_shot_decode_at_every_chunk_boundary(triton_stack, tiny_model_repository):
    chunks = asyncio.run(collect(triton_stack.grpc_url, greedy(LONG_TEXT, 2.5, penalty=1.0)))
    codes = codes_of(chunks)
    audio = np.concatenate([chunk.audio for chunk in chunks])
    whole = OnnxCodecDecoder(tiny_model_repository / T.SNAC_DECODER / "1" / T.ONNX_FILE)(codes[None])[0]
    assert audio.shape == whole.shape == (29 * FRAME,)
    boundaries = np.cumsum([chunk.audio.size for chunk in chunks])[:-1]
    assert len(boundaries) >= 6
    near = [slice(max(0, b - 2 * FRAME), b + 2 * FRAME) for b in boundaries]  # the first chunk may be one frame
    worst = max(float(np.max(np.abs(audio[edge] - whole[edge]))) for edge in near)
    print(f"largest difference within two frames of a chunk boundary: {worst:.2e}")
    assert worst < STREAMING_TOLERANCE
    assert float(np.max(np.abs(audio - whole))) < STREAMING_TOLERANCE


def test_a_long_prompt_prefills_without_stalling_the_other_streams(triton_stack):
    """While a 30 s voice prompt (about 2500 tokens) goes in, a running stream keeps receiving chunks."""
    url = triton_stack.grpc_url
    metrics = triton_stack.metrics_url
    runner = greedy(LONG_TEXT, 20.0, penalty=1.0)
    cloned = greedy("Cloned.", 0.5, reference_text="Someone talking for half a minute.", reference_codes=clip_codes(350))

    async def scenario():
        times: list[float] = []
        started = asyncio.Event()
        running = asyncio.create_task(collect(url, runner, started, times))
        await started.wait()
        await asyncio.sleep(0.5)  # the runner's steady rhythm before the long prompt arrives
        prefill_tokens = read_engine_metrics(metrics, T.ORPHEUS)["tritone_prefill_tokens_total"]
        submitted = time.perf_counter()
        first_cloned = asyncio.Event()
        cloned_task = asyncio.create_task(collect(url, cloned, first_cloned))
        await first_cloned.wait()
        cloned_first_audio = time.perf_counter()
        prefilled = read_engine_metrics(metrics, T.ORPHEUS)["tritone_prefill_tokens_total"] - prefill_tokens
        await cloned_task
        running.cancel()
        return times, submitted, cloned_first_audio, prefilled

    times, submitted, cloned_first_audio, prefilled = asyncio.run(scenario())
    gaps_before = np.diff([t for t in times if t < submitted])
    during = [t for t in times if submitted <= t <= cloned_first_audio]
    gaps_during = np.diff([max(t for t in times if t < submitted), *during, cloned_first_audio])
    prefill_s = cloned_first_audio - submitted
    print(f"prefill of {prefilled:.0f} tokens took {prefill_s:.2f} s; the running stream got {len(during)} chunks "
          f"meanwhile; largest gap {gaps_during.max():.3f} s (before: {gaps_before.max():.3f} s)")
    assert prefilled >= 2450
    assert len(during) >= 3  # it kept streaming through the prefill
    assert gaps_during.max() < prefill_s / 2
    assert read_engine_metrics(metrics, T.ORPHEUS)["tritone_decode_slots_active"] <= 1


def test_a_reference_clip_sent_as_audio_is_encoded_once(triton_stack):
    clip = np.random.default_rng(5).uniform(-0.3, 0.3, 2 * RATE).astype(np.float32)
    request = greedy("One.", 0.3, reference_text="Two seconds of noise.", reference_audio=clip)

    def encoder_executions() -> float:
        with urllib.request.urlopen(triton_stack.metrics_url, timeout=10) as response:
            for line in response.read().decode().splitlines():
                if line.startswith("nv_inference_count{") and f'model="{T.SNAC_ENCODER}"' in line:
                    return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = encoder_executions()
    first = asyncio.run(collect(triton_stack.grpc_url, request))
    second = asyncio.run(collect(triton_stack.grpc_url, request))
    assert encoder_executions() - before == 1
    np.testing.assert_array_equal(codes_of(first), codes_of(second))


def test_a_cloned_voice_s_turn_is_prefilled_once_for_every_sentence_and_counted_in_metrics(
    triton_stack, tiny_model_repository
):
    from tritone.ensemble.orpheus.metadata import OrpheusMetadata

    voice = {"reference_text": "A voice heard once.", "reference_codes": clip_codes(17, seed=41)}  # nowhere else
    request = greedy("First things first. Then the second one. And a third.", 0.6, **voice)
    before = read_engine_metrics(triton_stack.metrics_url, T.ORPHEUS)
    chunks = asyncio.run(collect_sentences(triton_stack.grpc_url, request))
    after = read_engine_metrics(triton_stack.metrics_url, T.ORPHEUS)

    sentences = ["First things first.", "Then the second one.", "And a third."]
    prompts = [reference_prompt(tiny_model_repository, text, None, **voice) for text in sentences]
    expected = [reference_speech(tiny_model_repository, prompt, int(0.6 * RATE / FRAME), 1.3) for prompt in prompts]
    np.testing.assert_array_equal(codes_of(chunks), np.concatenate(expected, axis=1))
    model = OrpheusMetadata.load(tiny_model_repository / T.ORPHEUS / "1")
    prefix = model.format.voice_prefix_length(prompts[0])
    assert prefix > 17 * 7 and all(prompt[:prefix] == prompts[0][:prefix] for prompt in prompts)
    delta = {name: after[name] - before.get(name, 0.0) for name in after if name.startswith("tritone_prefix_cache")}
    assert {name: value for name, value in delta.items() if not name.endswith("_bytes")} == {
        "tritone_prefix_cache_hits_total": 2, "tritone_prefix_cache_misses_total": 1,
        "tritone_prefix_cache_tokens_saved_total": 2 * prefix}
    assert after["tritone_prefix_cache_bytes"] - before["tritone_prefix_cache_bytes"] == prefix * model.kv_bytes_per_token(4)


async def collect_sentences(url, request: SpeechRequest):
    return [chunk async for chunk in stream_speech(url, request)]  # a request per sentence, the next started ahead


@pytest.mark.parametrize(
    "request_, message",
    [
        (SpeechRequest(text="Hi.", voice="alloy"), "INVALID_ARGUMENT: voice: 'alloy' is not a speaker of this checkpoint"),
        (SpeechRequest(text="Hi.", reference_text="no clip"), "INVALID_ARGUMENT: reference_text: needs the clip"),
        (SpeechRequest(text="Hi.", reference_text="short", reference_audio=np.zeros(RATE // 4, np.float32)),
         "INVALID_ARGUMENT: reference_audio: is 0.25 s at 24000 Hz; a reference clip must last 1 to 30 s"),
        (SpeechRequest(text="Hi.", max_duration=100.0), "INVALID_ARGUMENT: max_duration: must be in (0, 60] seconds"),
    ],
)
def test_bad_requests_fail_naming_the_field(triton_stack, request_, message):
    with pytest.raises(GenerationError) as error:
        asyncio.run(collect(triton_stack.grpc_url, request_))
    assert message in str(error.value)


def test_cancelling_a_stream_frees_its_slot(triton_stack):
    async def cancel_after_first_chunk():
        chunks = stream_speech(triton_stack.grpc_url, greedy(LONG_TEXT, 20.0, penalty=1.0), max_chars=None)
        async for _ in chunks:
            break
        await chunks.aclose()

    asyncio.run(cancel_after_first_chunk())
    deadline = time.monotonic() + 10
    while read_engine_metrics(triton_stack.metrics_url, T.ORPHEUS)["tritone_decode_slots_active"] != 0:
        assert time.monotonic() < deadline, "the cancelled stream's slot was not freed"
        time.sleep(0.1)
