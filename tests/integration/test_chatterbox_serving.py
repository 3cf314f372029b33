"""Chatterbox (T3 + flow + HiFT) served by a real tritonserver on CPU (tiny-random weights), over real gRPC: the
pipeline model calls chatterbox_voice and the chatterbox_codec ensemble (flow -> vocoder) through BLS."""

from __future__ import annotations

import asyncio
import time
import urllib.request

import numpy as np
import pytest

from tests.list_stream import ListStream, run_until_ended
from tritone.client import GenerationError, SpeechRequest, stream_speech
from tritone.client.metrics import read_engine_metrics
from tritone.ensemble import tensors as T
from tritone.ensemble.chatterbox.pipeline import ChatterboxPipeline, ChatterboxSettings
from tritone.ensemble.chatterbox.codec import CHATTERBOX_POLICY
from tritone.ensemble.engine.chunker import ChunkPolicy

pytestmark = pytest.mark.integration

RATE, FRAME = 24000, 960
# the test stack's chatterbox config (tests/integration/stack.py CHATTERBOX): chunks of 4, 8, 8, ... tokens
SERVED_POLICY = ChunkPolicy(first_frames=4, growth=CHATTERBOX_POLICY.growth, max_chunk_frames=8,
                            left_context=CHATTERBOX_POLICY.left_context, lookahead=CHATTERBOX_POLICY.lookahead,
                            min_window=CHATTERBOX_POLICY.min_window)


async def collect(url, request: SpeechRequest):
    return [chunk async for chunk in stream_speech(url, request, model=T.CHATTERBOX, max_chars=None)]


def run(url, *requests: SpeechRequest):
    async def together():
        return await asyncio.gather(*(collect(url, request) for request in requests))

    return asyncio.run(together())


def codes_of(chunks) -> np.ndarray:
    return np.concatenate([chunk.codes for chunk in chunks], axis=1)


def audio_of(chunks) -> np.ndarray:
    return np.concatenate([chunk.audio for chunk in chunks])


def clip(seconds: float, seed: int = 5) -> np.ndarray:
    from tritone.export.chatterbox.tiny import synthetic_voice

    return synthetic_voice(seconds=seconds, seed=seed)


def inference_count(metrics_url: str, model: str) -> float:
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("nv_inference_count{") and f'model="{model}"' in line:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_concurrent_seeded_streams_equal_the_in_process_pipeline(triton_stack, tiny_model_repository):
    """Three streams at once (built-in voice, a cloned one, no guidance): each is what the pipeline gives alone
    in-process with the same seed (codes equal, audio within float rounding of the batched codec), in order,
    with one final flag."""
    voice_clip = clip(3.0)
    requests = [SpeechRequest("The quick brown fox jumps over the lazy dog.", seed=1, max_duration=1.2,
                              return_codes=True),
                SpeechRequest("Hello there, friend.", seed=2, max_duration=0.8, reference_audio=voice_clip,
                              exaggeration=0.8, cfg_weight=0.3, return_codes=True),
                SpeechRequest("No guidance at all.", seed=3, max_duration=0.8, cfg_weight=0.0, min_p=0.1,
                              return_codes=True)]
    served = run(triton_stack.grpc_url, *requests)
    pipeline = ChatterboxPipeline(tiny_model_repository, ChatterboxSettings(policy=SERVED_POLICY))
    for request, chunks in zip(requests, served):
        assert [c.index for c in chunks] == list(range(len(chunks))) and len(chunks) >= 2
        assert [c.final for c in chunks].count(True) == 1 and chunks[-1].final
        assert {c.sample_rate for c in chunks} == {RATE}
        codes = codes_of(chunks)
        assert audio_of(chunks).shape == (FRAME * codes.shape[1],)
        raw = {T.TEXT: request.text, T.SEED: request.seed, T.MAX_DURATION: request.max_duration, T.RETURN_CODES: True}
        for name, value in ((T.REFERENCE_AUDIO, request.reference_audio), (T.EXAGGERATION, request.exaggeration),
                            (T.CFG_WEIGHT, request.cfg_weight), (T.MIN_P, request.min_p)):
            if value is not None:
                raw[name] = value
        alone = ListStream()
        pipeline.submit(pipeline.validate(raw), alone)
        run_until_ended(pipeline, alone)
        np.testing.assert_array_equal(codes, alone.codes())
        np.testing.assert_allclose(audio_of(chunks), np.concatenate([c.audio for c in alone.chunks]), atol=1e-4)


def test_a_reference_clip_becomes_its_voice_once(triton_stack):
    request = SpeechRequest("One.", seed=4, max_duration=0.4, reference_audio=clip(2.0, seed=9), return_codes=True)
    before = inference_count(triton_stack.metrics_url, T.CHATTERBOX_VOICE)
    first, = run(triton_stack.grpc_url, request)
    second, = run(triton_stack.grpc_url, request)
    assert inference_count(triton_stack.metrics_url, T.CHATTERBOX_VOICE) - before == 1
    np.testing.assert_array_equal(codes_of(first), codes_of(second))


@pytest.mark.parametrize(
    "request_, message",
    [
        (SpeechRequest("Hi.", voice="tara"),
         "INVALID_ARGUMENT: voice: 'tara' is not a built-in voice of this checkpoint; it has default"),
        (SpeechRequest("Hi.", exaggeration=5.0),
         "INVALID_ARGUMENT: exaggeration: must be in [0, 2] (emotion exaggeration, 0.5 is neutral), got 5"),
        (SpeechRequest("Hi.", reference_audio=np.zeros(RATE // 4, np.float32)),
         "INVALID_ARGUMENT: reference_audio: is 0.25 s at 24000 Hz; a reference clip must last 1 to 30 s"),
    ],
)
def test_bad_requests_fail_naming_the_field(triton_stack, request_, message):
    with pytest.raises(GenerationError) as error:
        run(triton_stack.grpc_url, request_)
    assert message in str(error.value)


def test_cancelling_a_stream_frees_its_slot(triton_stack):
    async def cancel_after_first_chunk():
        chunks = stream_speech(triton_stack.grpc_url, SpeechRequest("A long sentence to cancel. " * 4,
                                                                    max_duration=20.0), model=T.CHATTERBOX,
                               max_chars=None)
        async for _ in chunks:
            break
        await chunks.aclose()

    asyncio.run(cancel_after_first_chunk())
    deadline = time.monotonic() + 10
    while read_engine_metrics(triton_stack.metrics_url, T.CHATTERBOX)["tritone_decode_slots_active"] != 0:
        assert time.monotonic() < deadline, "the cancelled stream's slot was not freed"
        time.sleep(0.1)
