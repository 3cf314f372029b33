"""Unit tests for client/: request building, response parsing, the stream contract,
the WAV writer, and stream_music / the CLI against an in-process fake gRPC server."""

import asyncio
import threading
import time
from concurrent import futures

import grpc
import numpy as np
import pytest
import soundfile as sf
from tritonclient.grpc import InferResult, service_pb2, service_pb2_grpc
from tritonclient.grpc.aio import InferenceServerClient

from tritone.client import (
    AudioChunk,
    ChunkSequence,
    GenerationError,
    MusicRequest,
    ServerUnavailableError,
    StreamContractError,
    StreamStats,
    WavWriter,
    build_inputs,
    parse_result,
    stream_music,
)
from tritone.client.cli import main
from tritone.client.errors import error_from_stream, split_status
from tritone.ensemble import tensors as T

SR = 32000


# --- helpers -----------------------------------------------------------------


def response(index=None, audio=None, sample_rate=SR, codes=None, final=False):
    """A ModelInferResponse as the musicgen model sends it; index None: no outputs."""
    message = service_pb2.ModelInferResponse(model_name=T.MUSICGEN, id="r")
    if index is not None:
        audio = np.arange(4, dtype=np.float32) / 8 + index if audio is None else audio
        arrays = [
            (T.AUDIO, "FP32", audio),
            (T.CHUNK_INDEX, "INT32", np.array([index], np.int32)),
            (T.SAMPLE_RATE, "INT32", np.array([sample_rate], np.int32)),
        ]
        if codes is not None:
            arrays.append((T.CODES, "INT64", codes))
        for name, datatype, array in arrays:
            message.outputs.add(name=name, datatype=datatype, shape=list(array.shape))
            message.raw_output_contents.append(array.tobytes())
    if final:
        message.parameters["triton_final_response"].bool_param = True
    return message


def chunk(index, final=False, sample_rate=SR, codes=None):
    return AudioChunk(index, sample_rate, np.zeros(4, np.float32), codes, final)


def inputs_by_name(request):
    return {i.name(): i for i in build_inputs(request)}


# --- request building ----------------------------------------------------------


def test_required_inputs_only():
    inputs = inputs_by_name(MusicRequest("lo-fi piano", 8))
    assert list(inputs) == [T.TEXT, T.DURATION]
    assert inputs[T.TEXT].datatype() == "BYTES" and inputs[T.TEXT].shape() == [1]
    assert inputs[T.DURATION].datatype() == "FP32" and inputs[T.DURATION].shape() == [1]
    assert b"lo-fi piano" in inputs[T.TEXT]._get_content()
    assert np.frombuffer(inputs[T.DURATION]._get_content(), np.float32).tolist() == [8.0]


def test_optional_inputs_when_set():
    request = MusicRequest("x", 2.5, temperature=0.9, top_k=250, top_p=0.0, guidance_scale=3.0, seed=7, return_codes=True)
    inputs = inputs_by_name(request)
    expected = {
        T.TEMPERATURE: ("FP32", np.float32, 0.9),
        T.TOP_K: ("INT32", np.int32, 250),
        T.TOP_P: ("FP32", np.float32, 0.0),
        T.GUIDANCE_SCALE: ("FP32", np.float32, 3.0),
        T.SEED: ("INT64", np.int64, 7),
        T.RETURN_CODES: ("BOOL", np.bool_, True),
    }
    assert set(inputs) == {T.TEXT, T.DURATION, *expected}
    for name, (datatype, dtype, value) in expected.items():
        assert inputs[name].datatype() == datatype and inputs[name].shape() == [1]
        assert np.frombuffer(inputs[name]._get_content(), dtype)[0] == dtype(value)


# --- response parsing -------------------------------------------------------------


def test_parse_data_response():
    codes = np.arange(8, dtype=np.int64).reshape(4, 2)
    parsed = parse_result(InferResult(response(3, codes=codes, final=True)))
    assert (parsed.index, parsed.sample_rate, parsed.final) == (3, SR, True)
    assert parsed.audio.dtype == np.float32 and parsed.audio.tolist() == [3.0, 3.125, 3.25, 3.375]
    assert parsed.codes.tolist() == codes.tolist()
    assert parsed.seconds == 4 / SR


def test_parse_empty_final_response():
    assert parse_result(InferResult(response(final=True))) is None


def test_parse_rejects_empty_non_final_and_bad_audio():
    with pytest.raises(StreamContractError, match="final"):
        parse_result(InferResult(response()))
    with pytest.raises(StreamContractError, match=T.AUDIO):
        parse_result(InferResult(response(0, audio=np.zeros((1, 4), np.float32))))


# --- the stream contract ----------------------------------------------------------------


def feed(sequence, chunks):
    for c in chunks:
        sequence.accept(c)
    sequence.finish()
    return sequence


def test_contract_accepts_final_on_last_chunk_or_empty_final():
    assert feed(ChunkSequence(), [chunk(0), chunk(1), chunk(2, final=True)]).count == 3
    assert feed(ChunkSequence(), [chunk(0), chunk(1), None]).count == 2


@pytest.mark.parametrize(
    "chunks, match",
    [
        ([chunk(1, final=True)], "expected chunk 0, got chunk 1"),
        ([chunk(0), chunk(2, final=True)], "expected chunk 1, got chunk 2"),
        ([chunk(0), chunk(0), chunk(1, final=True)], "expected chunk 1, got chunk 0"),
        ([chunk(0), chunk(1)], "without a final"),
        ([chunk(0, final=True), chunk(1)], "after the final"),
        ([chunk(0, final=True), None], "after the final"),
        ([None], "without any audio"),
        ([chunk(0), chunk(1, final=True, sample_rate=16000)], "sample rate changed"),
    ],
)
def test_contract_violations(chunks, match):
    with pytest.raises(StreamContractError, match=match):
        feed(ChunkSequence(), chunks)


def test_contract_requires_codes_when_requested():
    with pytest.raises(StreamContractError, match=T.CODES):
        feed(ChunkSequence(expect_codes=True), [chunk(0, final=True)])


# --- errors and stats ----------------------------------------------------------------------


def test_error_status_parsing():
    assert split_status("[request id: abc] INVALID_ARGUMENT: duration must be > 0") == (
        "INVALID_ARGUMENT",
        "duration must be > 0",
    )
    assert split_status("model crashed: out of memory") == (None, "model crashed: out of memory")
    from tritonclient.utils import InferenceServerException

    error = error_from_stream(InferenceServerException("INVALID_ARGUMENT: bad top_k"))
    assert (error.status, error.message, str(error)) == ("INVALID_ARGUMENT", "bad top_k", "INVALID_ARGUMENT: bad top_k")


def test_stats():
    ticks = iter([10.0, 10.5, 12.0])  # start, first audio, finish
    stats = StreamStats(clock=lambda: next(ticks))
    stats.start()
    stats.record(SR, SR)
    stats.record(SR, SR)
    stats.finish()
    assert (stats.time_to_first_audio, stats.wall_seconds, stats.audio_seconds) == (0.5, 2.0, 2.0)
    assert (stats.real_time_factor, stats.x_real_time, stats.chunks) == (1.0, 1.0, 2)


# --- WAV writer ----------------------------------------------------------------------------------


def test_wav_writer_streams_float32(tmp_path):
    path = tmp_path / "song.wav"
    pieces = [np.linspace(-1, 1, n, dtype=np.float32) * 0.3 for n in (100, 37, 1000)]
    with WavWriter(path) as wav:
        for piece in pieces:
            wav.write(piece, SR)
        assert path.exists()
    audio, sample_rate = sf.read(path, dtype="float32")
    assert sample_rate == SR and sf.info(path).subtype == "FLOAT"
    np.testing.assert_array_equal(audio, np.concatenate(pieces))


def test_wav_writer_pcm16(tmp_path):
    path = tmp_path / "song.wav"
    with WavWriter(path, subtype="PCM_16") as wav:
        wav.write(np.full(10, 0.5, np.float32), 16000)
        wav.write(np.full(5, -0.5, np.float32), 16000)
    audio, sample_rate = sf.read(path, dtype="float32")
    assert sample_rate == 16000 and len(audio) == 15
    np.testing.assert_allclose(audio, [0.5] * 10 + [-0.5] * 5, atol=1e-4)


# --- stream_music against a fake server -------------------------------------------------------------


class FakeMusicgen(service_pb2_grpc.GRPCInferenceServiceServicer):
    """Replays `script` (ModelInferResponse, error string, or "forever") on each stream."""

    def __init__(self, script):
        self.script = script
        self.requests = []
        self.ended = threading.Event()

    def ModelStreamInfer(self, request_iterator, context):
        context.add_callback(self.ended.set)
        self.requests.append(next(request_iterator))
        for item in self.script:
            if item == "forever":
                index = 1
                while context.is_active():
                    yield service_pb2.ModelStreamInferResponse(infer_response=response(index))
                    index += 1
                    time.sleep(0.01)
            elif isinstance(item, str):
                yield service_pb2.ModelStreamInferResponse(error_message=item)
            else:
                yield service_pb2.ModelStreamInferResponse(infer_response=item)


@pytest.fixture
def serve():
    servers = []

    def start(script):
        fake = FakeMusicgen(script)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(fake, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return fake, f"127.0.0.1:{port}"

    yield start
    for server in servers:
        server.stop(None)


def collect(url, request, **options):
    async def run():
        return [c async for c in stream_music(url, request, **options)]

    return asyncio.run(run())


def test_stream_music_yields_chunks_and_stats(serve):
    fake, url = serve([response(0), response(1), response(2, final=True)])
    stats = StreamStats()
    chunks = collect(url, MusicRequest("piano", 1.0, seed=3), stats=stats, request_id="abc")
    assert [c.index for c in chunks] == [0, 1, 2] and [c.final for c in chunks] == [False, False, True]
    sent = fake.requests[0]
    assert sent.model_name == T.MUSICGEN and sent.id == "abc"
    assert [i.name for i in sent.inputs] == [T.TEXT, T.DURATION, T.SEED]
    assert sent.parameters["triton_enable_empty_final_response"].bool_param
    assert stats.chunks == 3 and stats.audio_seconds == pytest.approx(12 / SR)
    assert 0 < stats.time_to_first_audio <= stats.wall_seconds


def test_stream_music_empty_final_ends_stream(serve):
    _, url = serve([response(0), response(1), response(final=True)])
    assert [c.index for c in collect(url, MusicRequest("x", 1.0))] == [0, 1]


def test_stream_music_server_error(serve):
    _, url = serve([response(0), "[request id: r] INVALID_ARGUMENT: duration must be <= 30"])
    with pytest.raises(GenerationError) as caught:
        collect(url, MusicRequest("x", 99.0))
    assert (caught.value.status, caught.value.message) == ("INVALID_ARGUMENT", "duration must be <= 30")


def test_stream_music_missing_final(serve):
    _, url = serve([response(0), response(1)])
    with pytest.raises(StreamContractError, match="without a final"):
        collect(url, MusicRequest("x", 1.0))


def test_stream_music_out_of_order(serve):
    _, url = serve([response(0), response(2, final=True)])
    with pytest.raises(StreamContractError, match="expected chunk 1, got chunk 2"):
        collect(url, MusicRequest("x", 1.0))


def test_closing_the_iterator_cancels_the_stream(serve):
    fake, url = serve([response(0), "forever"])

    async def take_two():
        async with InferenceServerClient(url) as shared:  # stays open: only the stream is cancelled
            stream = stream_music(shared, MusicRequest("x", 30.0))
            indices = [(await anext(stream)).index, (await anext(stream)).index]
            await stream.aclose()
            ended = await asyncio.to_thread(fake.ended.wait, 5)
            return indices, ended

    assert asyncio.run(take_two()) == ([0, 1], True)


def test_cancelling_the_task_cancels_the_stream(serve):
    fake, url = serve([response(0), "forever"])

    async def consume(client, first):
        async for c in stream_music(client, MusicRequest("x", 30.0)):
            first.set()

    async def run():
        async with InferenceServerClient(url) as shared:
            first = asyncio.Event()
            task = asyncio.create_task(consume(shared, first))
            await first.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return await asyncio.to_thread(fake.ended.wait, 5)

    assert asyncio.run(run())


def test_a_channel_closed_under_a_stream_fails_it_instead_of_hanging(serve):
    """gRPC cancels the RPC locally when its channel closes: the reader ends, so the consumer is told."""
    _, url = serve([response(0), "forever"])

    async def run():
        shared = InferenceServerClient(url)
        stream = stream_music(shared, MusicRequest("x", 30.0))
        first = await anext(stream)
        await shared.close()
        with pytest.raises(StreamContractError, match="without a final"):
            async with asyncio.timeout(10):
                async for _ in stream:
                    pass
        return first.index

    assert asyncio.run(run()) == 0


def test_unreachable_server():
    with pytest.raises(ServerUnavailableError, match="cannot reach Triton at 127.0.0.1:1"):
        collect("127.0.0.1:1", MusicRequest("x", 1.0))


# --- CLI ----------------------------------------------------------------------------------------------------


def test_cli_writes_wav_and_codes(serve, tmp_path, capsys):
    codes = [np.full((4, 2), i, np.int64) for i in range(2)]
    fake, url = serve([response(0, codes=codes[0]), response(1, codes=codes[1], final=True)])
    out, codes_out = tmp_path / "song.wav", tmp_path / "codes.npy"
    argv = ["musicgen", "lo-fi piano with rain", "--duration", "8", "--out", str(out), "--url", url]
    assert main(argv + ["--top-k", "50", "--codes-out", str(codes_out)]) == 0
    assert [i.name for i in fake.requests[0].inputs] == [T.TEXT, T.DURATION, T.TOP_K, T.RETURN_CODES]
    assert len(sf.read(out)[0]) == 8
    assert np.load(codes_out).tolist() == np.concatenate(codes, axis=1).tolist()
    err = capsys.readouterr().err
    assert "chunk 1:" in err and "time to first audio" in err and "real-time factor" in err and str(out) in err


def test_cli_server_error_is_one_line(serve, tmp_path, capsys):
    _, url = serve(["INVALID_ARGUMENT: duration must be > 0"])
    assert main(["musicgen", "x", "--duration", "0", "--out", str(tmp_path / "a.wav"), "--url", url]) == 1
    assert capsys.readouterr().err == "error: INVALID_ARGUMENT: duration must be > 0\n"
