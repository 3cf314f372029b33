"""MusicGen served by a real tritonserver on CPU (tiny-random weights), over real gRPC streams."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import tritonclient.grpc.aio as grpcaio
from tritonclient.grpc import InferInput

import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tritone.client import GenerationError, MusicRequest, stream_music
from tritone.ensemble import tensors as T
from tritone.ensemble.musicgen.pipeline import MusicgenPipeline, PipelineSettings
from tritone.ensemble.musicgen.spec import FIRST_CHUNK
from tests.list_stream import ListStream, run_until_ended

from .stack import read_metrics
from .reference import reference_generate

pytestmark = pytest.mark.integration

SAMPLE_RATE, HOP, FRAME_RATE = 32000, 640, 50
# Chunked decoding with 25 frames of left context and 5 of lookahead reproduces the
# one-shot decode of the tiny EnCodec to float rounding (measured 3e-7); without context
# the seams differ by ~8e-2. The test holds streaming to this bound.
STREAMING_TOLERANCE = 1e-4


async def collect(url, request: MusicRequest, first_chunk: asyncio.Event | None = None):
    chunks = []
    async for chunk in stream_music(url, request):
        chunks.append(chunk)
        if first_chunk is not None:
            first_chunk.set()
    return chunks


def greedy(text: str, duration: float) -> MusicRequest:
    return MusicRequest(text=text, duration=duration, top_k=1, guidance_scale=3.0, return_codes=True)


def test_served_codes_equal_transformers_generate_for_requests_that_join_mid_generation(
    triton_stack, tiny_model_repository
):
    url = triton_stack.grpc_url
    before = read_metrics(triton_stack)
    first = greedy("lo-fi piano with rain", 20.0)  # long enough that both joiners arrive mid-generation on a slow machine
    joiners = [greedy("drums", 1.0), greedy("calm ambient pads over a slow string melody with brass", 2.5)]

    async def scenario():
        started = asyncio.Event()
        running = asyncio.create_task(collect(url, first, started))
        await started.wait()  # the first request is mid-generation: the others join its batch
        results = await asyncio.gather(*(collect(url, request) for request in joiners))
        return [await running, *results]

    results = asyncio.run(scenario())
    after = read_metrics(triton_stack)

    for request, chunks in zip([first, *joiners], results):
        codes = np.concatenate([chunk.codes for chunk in chunks], axis=1)
        frames = round(request.duration * FRAME_RATE)
        expected_codes, _ = reference_generate(tiny_model_repository, request.text, frames)
        assert codes.shape == (4, frames)
        np.testing.assert_array_equal(codes, expected_codes, err_msg=request.text)
    assert after["tritone_requests_joined_running_total"] - before["tritone_requests_joined_running_total"] >= 2
    assert after["tritone_decode_batch_requests_max"] >= 2


def test_concurrent_streams_share_decode_steps(triton_stack):
    url = triton_stack.grpc_url
    before = read_metrics(triton_stack)
    requests = [MusicRequest(text=f"jazz trio {i}", duration=6.0, seed=i) for i in range(4)]

    async def scenario():
        return await asyncio.gather(*(collect(url, request) for request in requests))

    results = asyncio.run(scenario())
    after = read_metrics(triton_stack)
    steps = after["tritone_decode_steps_total"] - before["tritone_decode_steps_total"]
    request_steps = after["tritone_decode_request_steps_total"] - before["tritone_decode_request_steps_total"]
    # 4 requests of 303 steps: one at a time that is 1212 steps; in-flight batching shares most of them
    # (the requests arrive a few milliseconds apart, so a few steps run before all have joined).
    assert request_steps == 4 * (6 * FRAME_RATE + 3)
    assert steps < 0.6 * request_steps, f"{steps} steps for {request_steps} request-steps: batches were not shared"
    assert after["tritone_decode_batch_requests_max"] >= 3
    assert [sum(len(c.audio) for c in chunks) for chunks in results] == [6 * SAMPLE_RATE] * 4


def test_streamed_chunks_arrive_in_order_once_and_match_the_one_shot_waveform(triton_stack, tiny_model_repository):
    request = greedy("orchestral film score with brass and timpani", 6.0)
    chunks = asyncio.run(collect(triton_stack.grpc_url, request))

    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))
    assert [chunk.final for chunk in chunks] == [False] * (len(chunks) - 1) + [True]
    assert {chunk.sample_rate for chunk in chunks} == {SAMPLE_RATE}
    assert len(chunks[0].audio) == int(FIRST_CHUNK["cpu"]["busy_first_frames"]) * HOP  # the CPU target's: 0.1 s
    audio = np.concatenate([chunk.audio for chunk in chunks])
    assert audio.shape == (6 * SAMPLE_RATE,)
    _, expected_audio = reference_generate(tiny_model_repository, request.text, 6 * FRAME_RATE)
    assert np.max(np.abs(audio - expected_audio)) < STREAMING_TOLERANCE


def test_many_concurrent_streams_lose_no_chunk(triton_stack):
    requests = [MusicRequest(text="upbeat electronic dance music", duration=1.0 + 0.25 * i, seed=i) for i in range(8)]

    async def scenario():
        return await asyncio.gather(*(collect(triton_stack.grpc_url, r) for r in requests))

    for request, chunks in zip(requests, asyncio.run(scenario())):
        assert [c.index for c in chunks] == list(range(len(chunks)))
        assert sum(len(c.audio) for c in chunks) == round(request.duration * FRAME_RATE) * HOP
        assert chunks[-1].final


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"text": "   "}, "INVALID_ARGUMENT: text: must be non-empty text"),
        ({"duration": 1000.0}, "INVALID_ARGUMENT: duration: must be in [0.1, 30] seconds, got 1000"),
        ({"duration": 0.0}, "INVALID_ARGUMENT: duration: must be in [0.1, 30] seconds, got 0"),
        ({"temperature": -1.0}, "INVALID_ARGUMENT: temperature: must be in [0, 10] (0 is greedy), got -1"),
        ({"top_p": 1.5}, "INVALID_ARGUMENT: top_p: must be in (0, 1] (1 disables it), got 1.5"),
        ({"top_k": 100000}, "INVALID_ARGUMENT: top_k: must be in [0, 64] (0 disables it), got 100000"),
        # refused by musicgen_tokenizer inside the text conditioning ensemble, passed back word for word
        ({"text": "drums " * 300}, "INVALID_ARGUMENT: text: is 301 tokens long; the limit is 256"),
    ],
)
def test_bad_input_is_refused_with_a_message_naming_the_field(triton_stack, overrides, message):
    request = MusicRequest(**{"text": "lo-fi piano", "duration": 1.0, **overrides})
    with pytest.raises(GenerationError) as error:
        asyncio.run(collect(triton_stack.grpc_url, request))
    assert error.value.status == "INVALID_ARGUMENT"
    assert message.split(": ", 1)[1] in str(error.value)
    assert error.value.message == message.split(": ", 1)[1]
    # and the server keeps serving
    chunks = asyncio.run(collect(triton_stack.grpc_url, MusicRequest(text="lo-fi piano", duration=0.5)))
    assert sum(len(c.audio) for c in chunks) == SAMPLE_RATE // 2


async def raw_stream(url: str, inputs: list[InferInput]):
    """Send hand-built inputs; return the first error message the stream reports."""
    client = grpcaio.InferenceServerClient(url)

    async def requests():
        yield {"model_name": T.MUSICGEN, "inputs": inputs}

    message = None
    try:
        async for result, error in client.stream_infer(requests()):  # to the server's end of the stream: a
            message = message or (None if error is None else error.message())  # cancelled one leaks in 2.51
    finally:
        await client.close()
    return message


def scalar(name, dtype, value):
    tensor = InferInput(name, [1], dtype)
    tensor.set_data_from_numpy(np.array([value], dtype=object if dtype == "BYTES" else None))
    return tensor


def test_a_wrong_dtype_is_refused_naming_the_input(triton_stack):
    inputs = [scalar(T.TEXT, "BYTES", b"lo-fi"), InferInput(T.DURATION, [1], "INT32")]
    inputs[1].set_data_from_numpy(np.array([5], np.int32))
    message = asyncio.run(raw_stream(triton_stack.grpc_url, inputs))
    assert "'duration'" in message and "FP32" in message and "INT32" in message


def test_a_missing_duration_is_refused_naming_it(triton_stack):
    message = asyncio.run(raw_stream(triton_stack.grpc_url, [scalar(T.TEXT, "BYTES", b"lo-fi")]))
    assert "duration" in message


def test_a_cancelled_stream_frees_its_decode_slot(triton_stack):
    url = triton_stack.grpc_url
    before = read_metrics(triton_stack)

    async def scenario():
        stream = stream_music(url, MusicRequest(text="long ambient drone", duration=30.0))
        await anext(stream)  # generation is running
        await stream.aclose()  # cancels the gRPC stream
        for _ in range(100):  # the slot is freed at the next step; allow the metrics a moment
            metrics = read_metrics(triton_stack)
            if metrics["tritone_streams_cancelled_total"] > before["tritone_streams_cancelled_total"]:
                return metrics
            await asyncio.sleep(0.05)
        return read_metrics(triton_stack)

    after = asyncio.run(scenario())
    assert after["tritone_streams_cancelled_total"] == before["tritone_streams_cancelled_total"] + 1
    assert after["tritone_decode_slots_active"] == 0
    full = 30 * FRAME_RATE + 3
    assert after["tritone_decode_steps_total"] - before["tritone_decode_steps_total"] < full


def test_requests_beyond_capacity_are_refused_cleanly_and_the_rest_complete(triton_stack):
    # 4 slots + 4 waiting (conftest.CAPACITY): of 10 long requests sent at once, 2 are refused.
    requests = [MusicRequest(text=f"drone {i}", duration=4.0, seed=i) for i in range(10)]

    async def attempt(request):
        try:
            return await collect(triton_stack.grpc_url, request)
        except GenerationError as error:
            return error

    async def scenario():
        return await asyncio.gather(*(attempt(r) for r in requests))

    outcomes = asyncio.run(scenario())
    refused = [o for o in outcomes if isinstance(o, GenerationError)]
    served = [o for o in outcomes if not isinstance(o, GenerationError)]
    assert len(refused) == 2
    assert all(e.status == "UNAVAILABLE" and "musicgen is at capacity" in str(e) for e in refused)
    assert all(sum(len(c.audio) for c in chunks) == 4 * SAMPLE_RATE for chunks in served)


# --- text conditioning: a Triton ensemble (musicgen_tokenizer -> musicgen_text_encoder) ---------------------

PROMPTS = ["lo-fi piano with rain", "drums " * 20, "drums"]  # 7, 21 and 2 tokens: buckets 16, 32 and 16


def texts(prompts: list[str]) -> np.ndarray:
    return np.array([[prompt.encode()] for prompt in prompts], dtype=object)


def infer(client, model: str, inputs: dict[str, np.ndarray], outputs: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    tensors = []
    for name, array in inputs.items():
        tensor = grpcclient.InferInput(name, list(array.shape), "BYTES" if array.dtype == object else "INT64")
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    result = client.infer(model, tensors, outputs=[grpcclient.InferRequestedOutput(name) for name in outputs])
    return tuple(result.as_numpy(name) for name in outputs)


@pytest.mark.parametrize("prompts", [PROMPTS[:1], PROMPTS[1:2], PROMPTS], ids=["one", "second-bucket", "batch-of-3"])
def test_raw_text_to_the_ensemble_equals_the_tokenizer_then_the_text_encoder_called_separately(triton_stack, prompts):
    client = grpcclient.InferenceServerClient(triton_stack.grpc_url)
    try:
        hidden, mask = infer(client, T.MUSICGEN_TEXT_CONDITIONING, {T.TEXT: texts(prompts)},
                             (T.ENCODER_HIDDEN_STATES, T.ATTENTION_MASK))
        ids, expected_mask = infer(client, T.MUSICGEN_TOKENIZER, {T.TEXT: texts(prompts)},
                                   (T.INPUT_IDS, T.ATTENTION_MASK))
        (expected,) = infer(client, T.MUSICGEN_TEXT_ENCODER, {T.INPUT_IDS: ids, T.ATTENTION_MASK: expected_mask},
                            (T.ENCODER_HIDDEN_STATES,))
    finally:
        client.close()
    width = 32 if len(prompts) > 1 or prompts == PROMPTS[1:2] else 16  # the longest prompt's bucket
    assert mask.shape == (len(prompts), width) and hidden.shape[:2] == (len(prompts), width)
    np.testing.assert_array_equal(mask, expected_mask)
    np.testing.assert_allclose(hidden, expected, rtol=0, atol=1e-6)


def test_the_ensemble_refuses_a_prompt_over_the_token_limit_naming_the_field_and_both_counts(triton_stack):
    client = grpcclient.InferenceServerClient(triton_stack.grpc_url)
    try:
        with pytest.raises(InferenceServerException) as error:
            infer(client, T.MUSICGEN_TEXT_CONDITIONING, {T.TEXT: texts(["drums", "drums " * 300])},
                  (T.ENCODER_HIDDEN_STATES,))
        # and it keeps serving
        (hidden,) = infer(client, T.MUSICGEN_TEXT_CONDITIONING, {T.TEXT: texts(["drums"])}, (T.ENCODER_HIDDEN_STATES,))
    finally:
        client.close()
    assert error.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert error.value.message() == ("in ensemble 'musicgen_text_conditioning', "
                                     "text: is 301 tokens long; the limit is 256")
    assert hidden.shape[:2] == (1, 16)


def test_streams_conditioned_by_the_ensemble_equal_the_in_process_tokenizer_and_encoder(
    triton_stack, tiny_model_repository
):
    """Lossless: the served pipeline (text through the ensemble, BLS) streams the very codes and audio of the
    same pipeline conditioning in process (PromptTokenizer, then the ONNX text encoder), seeded sampling."""
    client = grpcclient.InferenceServerClient(triton_stack.grpc_url)
    config = client.get_model_config(T.MUSICGEN, as_json=True)["config"]
    client.close()
    settings = PipelineSettings.from_parameters({k: v["string_value"] for k, v in config["parameters"].items()})
    local = MusicgenPipeline(tiny_model_repository, settings)
    for index, prompt in enumerate(PROMPTS[:2]):
        request = MusicRequest(text=prompt, duration=2.0, seed=11 + index, temperature=1.0, top_k=32,
                               guidance_scale=3.0, return_codes=True)
        served = asyncio.run(collect(triton_stack.grpc_url, request))
        stream = ListStream()
        params = local.validate({T.TEXT: prompt, T.DURATION: 2.0, T.SEED: 11 + index, T.TEMPERATURE: 1.0,
                                 T.TOP_K: 32, T.GUIDANCE_SCALE: 3.0, T.RETURN_CODES: True})
        local.submit([(params, stream)])
        run_until_ended(local, stream)
        assert [len(chunk.audio) for chunk in served] == [len(chunk.audio) for chunk in stream.chunks], prompt
        np.testing.assert_array_equal(np.concatenate([c.codes for c in served], axis=1), stream.codes(), err_msg=prompt)
        np.testing.assert_array_equal(np.concatenate([c.audio for c in served]),
                                      np.concatenate([c.audio for c in stream.chunks]), err_msg=prompt)
