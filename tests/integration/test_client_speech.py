"""The speech client against a real tritonserver serving the tiny-random Orpheus export: stream_speech and
`python -m tritone.client speech`, with a built-in speaker and with a local clip sent as REFERENCE_AUDIO."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import soundfile as sf

from tritone.client import GenerationError, SpeechRequest, StreamStats, stream_speech
from tritone.client.cli import main
from tritone.ensemble import tensors as T

pytestmark = pytest.mark.integration
RATE = 24000
FRAME = 2048
FIRST = "Hello there, how are you doing today?"
SECOND = "The quick brown fox jumps over the lazy dog."


def collect(url, request, **options):
    async def run():
        return [chunk async for chunk in stream_speech(url, request, **options)]

    return asyncio.run(run())


def test_one_sentence_streams_24_khz_chunks_in_order(triton_stack):
    stats = StreamStats()
    chunks = collect(triton_stack.grpc_url, SpeechRequest(FIRST, voice="tara", max_duration=1.0, temperature=0,
                                                             return_codes=True), stats=stats)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert [c.final for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert {c.sample_rate for c in chunks} == {RATE}
    samples = sum(len(c.audio) for c in chunks)
    frames = sum(c.codes.shape[1] for c in chunks)
    assert samples == frames * FRAME and 0 < samples <= RATE + FRAME
    assert all(c.codes.shape[0] == 7 for c in chunks)
    assert 0 < stats.time_to_first_audio <= stats.wall_seconds


def test_sentences_stream_as_one_in_order(triton_stack):
    url = triton_stack.grpc_url
    options = {"voice": "leo", "max_duration": 1.0, "temperature": 0, "seed": 1}
    alone = [np.concatenate([c.audio for c in collect(url, SpeechRequest(s, **options))]) for s in (FIRST, SECOND)]
    chunks = collect(url, SpeechRequest(f"{FIRST} {SECOND}", **options))
    assert [c.index for c in chunks] == list(range(len(chunks))) and chunks[-1].final
    np.testing.assert_array_equal(np.concatenate([c.audio for c in chunks]), np.concatenate(alone))


def test_an_unknown_speaker_is_named_by_the_model(triton_stack):
    with pytest.raises(GenerationError) as refused:
        collect(triton_stack.grpc_url, SpeechRequest(FIRST, voice="nobody"))
    assert refused.value.status == "INVALID_ARGUMENT"
    assert refused.value.message.startswith(f"{T.VOICE}: 'nobody' is not a speaker of this checkpoint")


def test_cli_writes_the_wav_as_it_streams_and_reports_timing(triton_stack, tmp_path, capsys):
    out = tmp_path / "speech.wav"
    argv = ["speech", f"{FIRST} {SECOND}", "--voice", "tara", "--out", str(out), "--url", triton_stack.grpc_url,
            "--max-duration", "1", "--temperature", "0", "--seed", "2"]
    assert main(argv) == 0
    audio, rate = sf.read(out)
    assert rate == RATE and 0 < len(audio) <= 2 * (RATE + FRAME) and len(audio) % FRAME == 0
    err = capsys.readouterr().err
    assert "chunk 0:" in err and "time to first audio" in err and "real-time factor" in err and str(out) in err


def test_cli_clones_a_local_clip(triton_stack, tmp_path, capsys):
    clip = tmp_path / "me.flac"
    t = np.arange(int(1.5 * 44100)) / 44100
    sf.write(clip, np.stack([0.2 * np.sin(2 * np.pi * 180 * t)] * 2, axis=1), 44100)  # stereo, 44.1 kHz
    out = tmp_path / "cloned.wav"
    argv = ["speech", SECOND, "--reference", str(clip), "--reference-text", FIRST, "--out", str(out),
            "--url", triton_stack.grpc_url, "--max-duration", "1"]
    assert main(argv) == 0, capsys.readouterr().err
    assert sf.info(out).samplerate == RATE and sf.info(out).frames > 0
