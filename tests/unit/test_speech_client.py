"""client.speech and `python -m tritone.client speech`: the orpheus inputs, sentence-by-sentence streaming with the
next sentence started ahead, cancellation of every open stream, against an in-process fake gRPC server."""

import asyncio
import threading
import time
from concurrent import futures

import grpc
import numpy as np
import pytest
import soundfile as sf
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import deserialize_bytes_tensor

from tritone.client import GenerationError, SpeechRequest, StreamStats, speech_inputs, stream_speech
from tritone.client.cli import main
from tritone.client.speech import sentence_requests
from tritone.ensemble import tensors as T
from tritone.ensemble.families import FAMILIES
from tritone.ensemble.triton.spec import to_proto
from tests.unit.test_client import response

SR = 24000


def inputs_by_name(request):
    return {i.name(): i for i in speech_inputs(request)}


def test_text_is_the_only_required_input():
    inputs = inputs_by_name(SpeechRequest("Hello there."))
    assert list(inputs) == [T.TEXT]
    assert inputs[T.TEXT].datatype() == "BYTES" and inputs[T.TEXT].shape() == [1]


def test_every_optional_input_has_the_models_type_and_shape():
    codes = np.arange(21).reshape(7, 3)
    request = SpeechRequest("Hi.", voice="tara", reference_text="a clip", reference_codes=codes,
                            reference_audio=np.zeros(480, np.float64), max_duration=5, temperature=0.6, top_k=50,
                            top_p=0.9, repetition_penalty=1.1, seed=7, return_codes=True)
    inputs = inputs_by_name(request)
    expected = {
        T.TEXT: ("BYTES", [1]), T.VOICE: ("BYTES", [1]), T.REFERENCE_TEXT: ("BYTES", [1]),
        T.REFERENCE_CODES: ("INT64", [7, 3]), T.REFERENCE_AUDIO: ("FP32", [480]),
        T.MAX_DURATION: ("FP32", [1]), T.TEMPERATURE: ("FP32", [1]), T.TOP_K: ("INT32", [1]),
        T.TOP_P: ("FP32", [1]), T.REPETITION_PENALTY: ("FP32", [1]), T.SEED: ("INT64", [1]),
        T.RETURN_CODES: ("BOOL", [1]),
    }
    assert {name: (i.datatype(), i.shape()) for name, i in inputs.items()} == expected
    assert np.frombuffer(inputs[T.REFERENCE_CODES]._get_content(), np.int64).tolist() == list(range(21))
    assert np.frombuffer(inputs[T.REPETITION_PENALTY]._get_content(), np.float32)[0] == np.float32(1.1)


def test_sentence_requests_keep_everything_but_the_text():
    request = SpeechRequest("Dr. Smith paid $3.50. Then he left!", voice="leo", seed=3)
    assert sentence_requests(request) == [SpeechRequest("Dr. Smith paid $3.50.", voice="leo", seed=3),
                                          SpeechRequest("Then he left!", voice="leo", seed=3)]
    assert sentence_requests(request, max_chars=None) == [request]
    assert sentence_requests(SpeechRequest("  ")) == [SpeechRequest("  ")]  # the server names the problem


# --- a fake orpheus: its answer depends on the text ---------------------------------------------


def text_of(request) -> str:
    names = [i.name for i in request.inputs]
    raw = request.raw_input_contents[names.index(T.TEXT)]
    return deserialize_bytes_tensor(raw)[0].decode()


def spec_configs(**changed: dict[str, str]) -> dict:
    """Every registered family's models' CPU configs as its spec renders them (what a gateway reads from Triton);
    `changed`: model name -> parameters to set in its config (a limit changed in the spec)."""
    configs = {spec.name: to_proto(spec, "cpu") for family in FAMILIES.values() for spec in family.models()}
    for name, parameters in changed.items():
        for key, value in parameters.items():
            configs[name].parameters[key].string_value = value
    return configs


class FakeOrpheus(service_pb2_grpc.GRPCInferenceServiceServicer):
    """Per stream: `script(text, fake)` gives ModelInferResponses, error strings, or callables to wait on.
    Unary calls are the codec encoder: codes [1, 7, samples // 2048] (at least one frame). The repository holds
    `configs` (model name -> ModelConfig; default: the specs'), every model READY at version 1."""

    def __init__(self, script, configs: dict | None = None):
        self.script = script
        self.configs = spec_configs() if configs is None else configs
        self.texts: list[str] = []
        self.requests = []
        self.ended: list[str] = []
        self.encoded: list[np.ndarray] = []
        self.encoders: list[str] = []  # the model each unary (encoding) call named
        self.arrived = threading.Condition()

    def ModelInfer(self, request, context):
        audio = np.frombuffer(request.raw_input_contents[0], np.float32).reshape(list(request.inputs[0].shape))
        self.encoded.append(audio)
        self.encoders.append(request.model_name)
        frames = max(1, audio.shape[1] // 2048)
        codes = (np.arange(7 * frames, dtype=np.int64) % 4096).reshape(1, 7, frames)
        message = service_pb2.ModelInferResponse(model_name=request.model_name, id=request.id)
        message.outputs.add(name=T.AUDIO_CODES, datatype="INT64", shape=list(codes.shape))
        message.raw_output_contents.append(codes.tobytes())
        return message

    def RepositoryIndex(self, request, context):
        return service_pb2.RepositoryIndexResponse(models=[
            service_pb2.RepositoryIndexResponse.ModelIndex(name=name, version="1", state="READY")
            for name in self.configs])

    def ModelConfig(self, request, context):
        if request.name not in self.configs:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Request for unknown model: '{request.name}' is not found")
        return service_pb2.ModelConfigResponse(config=self.configs[request.name])

    def ModelStreamInfer(self, request_iterator, context):
        request = next(request_iterator)
        text = text_of(request)
        context.add_callback(lambda: self.ended.append(text))
        with self.arrived:
            self.texts.append(text)
            self.requests.append(request)
            self.arrived.notify_all()
        for item in self.script(text, self):
            if callable(item):
                item()
            elif isinstance(item, str):
                yield service_pb2.ModelStreamInferResponse(error_message=item)
            else:
                yield service_pb2.ModelStreamInferResponse(infer_response=item)
            if not context.is_active():
                return

    def wait_for(self, text, timeout=5.0) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: text in self.texts, timeout)


def spoken(text, chunks=2):
    """Chunks whose samples say which sentence they belong to (its length)."""
    return [response(i, audio=np.full(SR // 10, len(text), np.float32), sample_rate=SR, final=i == chunks - 1)
            for i in range(chunks)]


def start_fake(script, configs: dict | None = None) -> tuple[FakeOrpheus, str, grpc.Server]:
    fake = FakeOrpheus(script, configs)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return fake, f"127.0.0.1:{port}", server


@pytest.fixture
def serve():
    servers = []

    def start(script):
        fake, url, server = start_fake(script)
        servers.append(server)
        return fake, url

    yield start
    for server in servers:
        server.stop(None)


def collect(url, request, **options):
    async def run():
        return [c async for c in stream_speech(url, request, **options)]

    return asyncio.run(run())


TEXT = "The first sentence is here. A second one follows it. And the third ends it."
SENTENCES = ["The first sentence is here.", "A second one follows it.", "And the third ends it."]


def test_one_sentence_is_one_stream_passed_through(serve):
    fake, url = serve(lambda text, fake: spoken(text, 3))
    chunks = collect(url, SpeechRequest("Hello there, world.", voice="tara"))
    assert [(c.index, c.final, c.sample_rate) for c in chunks] == [(0, False, SR), (1, False, SR), (2, True, SR)]
    assert fake.texts == ["Hello there, world."]
    assert fake.requests[0].model_name == T.ORPHEUS
    assert [i.name for i in fake.requests[0].inputs] == [T.TEXT, T.VOICE]


def test_sentences_stream_in_order_as_one_stream(serve):
    fake, url = serve(lambda text, fake: spoken(text))
    stats = StreamStats()
    chunks = collect(url, SpeechRequest(TEXT, voice="tara", seed=5), stats=stats, request_id="r")
    assert [c.index for c in chunks] == list(range(6))
    assert [c.final for c in chunks] == [False] * 5 + [True]
    assert [c.audio[0] for c in chunks] == [len(s) for s in SENTENCES for _ in range(2)]
    assert sorted(fake.texts) == sorted(SENTENCES)
    assert sorted(r.id for r in fake.requests) == ["r-0", "r-1", "r-2"]
    assert all([i.name for i in r.inputs] == [T.TEXT, T.VOICE, T.SEED] for r in fake.requests)
    assert stats.chunks == 6 and stats.audio_seconds == pytest.approx(0.6)


def test_the_next_sentence_starts_before_the_current_one_ends(serve):
    """Sentence i holds back its last chunk until sentence i + 1 has been requested: without the
    look-ahead this would never finish."""
    def script(text, fake):
        position = SENTENCES.index(text)
        first, last = spoken(text)
        after = SENTENCES[position + 1] if position + 1 < len(SENTENCES) else None
        return [first, (lambda: fake.wait_for(after) or pytest.fail("not started ahead")) if after else None, last]

    fake, url = serve(lambda text, fake: [item for item in script(text, fake) if item is not None])
    chunks = collect(url, SpeechRequest(TEXT), timeout=10)
    assert len(chunks) == 6 and fake.texts == SENTENCES  # requested in order


def test_only_one_sentence_runs_ahead(serve):
    fake, url = serve(lambda text, fake: spoken(text))

    async def first_chunk():
        stream = stream_speech(url, SpeechRequest(TEXT))
        await anext(stream)
        await asyncio.sleep(0.3)  # time for any premature request to arrive
        texts = list(fake.texts)
        await stream.aclose()
        return texts

    assert asyncio.run(first_chunk()) == SENTENCES[:2]


def test_a_sentence_without_frames_adds_nothing(serve):
    def script(text, fake):
        return [response(0, audio=np.zeros(0, np.float32), sample_rate=SR, final=True)] if "second" in text \
            else spoken(text)

    _, url = serve(script)
    chunks = collect(url, SpeechRequest(TEXT))
    assert [c.index for c in chunks] == [0, 1, 2, 3] and [len(c.audio) for c in chunks] == [SR // 10] * 4


def test_a_later_sentences_error_comes_after_the_earlier_audio(serve):
    def script(text, fake):
        return ["INVALID_ARGUMENT: text: too many tokens"] if "third" in text else spoken(text)

    _, url = serve(script)
    received = []

    async def run():
        async for chunk in stream_speech(url, SpeechRequest(TEXT)):
            received.append(chunk.index)

    with pytest.raises(GenerationError) as caught:
        asyncio.run(run())
    assert (caught.value.status, caught.value.message) == ("INVALID_ARGUMENT", "text: too many tokens")
    assert received == [0, 1, 2, 3]


def test_closing_the_stream_cancels_every_open_sentence(serve):
    def forever(text, fake):
        yield from spoken(text)[:1]
        while True:
            time.sleep(0.01)
            yield response(1, audio=np.zeros(10, np.float32), sample_rate=SR)

    fake, url = serve(lambda text, fake: forever(text, fake))

    async def run():
        stream = stream_speech(url, SpeechRequest(TEXT))
        await anext(stream)
        while len(fake.texts) < 2:  # the second sentence is open too
            await asyncio.sleep(0.01)
        await stream.aclose()
        for _ in range(500):
            if len(fake.ended) == 2:
                break
            await asyncio.sleep(0.01)
        return sorted(fake.ended)

    assert asyncio.run(run()) == sorted(SENTENCES[:2])


# --- CLI -----------------------------------------------------------------------------------------------


def test_cli_speaks_sentence_by_sentence_into_a_wav(serve, tmp_path, capsys):
    fake, url = serve(lambda text, fake: spoken(text))
    out = tmp_path / "speech.wav"
    assert main(["speech", TEXT, "--voice", "tara", "--out", str(out), "--url", url, "--seed", "4",
                 "--temperature", "0.5"]) == 0
    audio, rate = sf.read(out, dtype="float32")
    assert rate == SR and len(audio) == 6 * SR // 10
    assert sorted({float(x) for x in audio}) == sorted(float(len(s)) for s in SENTENCES)
    assert [i.name for i in fake.requests[0].inputs] == [T.TEXT, T.VOICE, T.TEMPERATURE, T.SEED]
    err = capsys.readouterr().err
    assert "chunk 5:" in err and "time to first audio" in err and "real-time factor" in err and str(out) in err


def test_cli_clones_a_local_clip_sent_as_24_khz_mono(serve, tmp_path):
    fake, url = serve(lambda text, fake: spoken(text, 1))
    clip = tmp_path / "clip.wav"
    sf.write(clip, np.full((44100, 2), 0.25, np.float32), 44100)  # 1 s of stereo at 44.1 kHz
    argv = ["speech", "Say this please.", "--reference", str(clip), "--reference-text", "the words in the clip",
            "--out", str(tmp_path / "a.wav"), "--url", url]
    assert main(argv) == 0
    sent = {i.name: (i.shape, raw) for i, raw in zip(fake.requests[0].inputs, fake.requests[0].raw_input_contents)}
    assert list(sent) == [T.TEXT, T.REFERENCE_TEXT, T.REFERENCE_AUDIO]
    shape, raw = sent[T.REFERENCE_AUDIO]
    assert list(shape) == [SR]
    np.testing.assert_allclose(np.frombuffer(raw, np.float32)[100:-100], 0.25, atol=1e-3)
    assert deserialize_bytes_tensor(sent[T.REFERENCE_TEXT][1])[0] == b"the words in the clip"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--reference", "clip.wav"], "error: --reference and --reference-text go together (orpheus)\n"),
        (["--reference", "missing.wav", "--reference-text", "x"], "error: --reference missing.wav: "),
        (["--exaggeration", "0.7"], "error: --exaggeration, --cfg-weight and --min-p are chatterbox's "
                                    "(--model chatterbox)\n"),
        (["--model", "chatterbox", "--reference", "missing.wav"], "error: --reference missing.wav: "),
    ],
)
def test_cli_reference_problems_are_one_line(tmp_path, capsys, extra, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["speech", "Hi there.", "--out", "a.wav", "--url", "127.0.0.1:1", *extra]) == 1
    assert capsys.readouterr().err.startswith(message)


def test_cli_sends_chatterbox_its_model_and_its_own_fields(serve, tmp_path):
    fake, url = serve(lambda text, fake: spoken(text, 1))
    assert main(["speech", "Hi there you.", "--model", "chatterbox", "--exaggeration", "0.8", "--cfg-weight", "0.3",
                 "--min-p", "0.1", "--seed", "4", "--out", str(tmp_path / "a.wav"), "--url", url]) == 0
    [request] = fake.requests
    assert request.model_name == T.CHATTERBOX
    sent = {i.name: np.frombuffer(raw, np.float32 if i.datatype == "FP32" else np.int64)
            for i, raw in zip(request.inputs, request.raw_input_contents) if i.name != T.TEXT}
    assert {name: float(value[0]) for name, value in sent.items()} == {
        T.EXAGGERATION: pytest.approx(0.8), T.CFG_WEIGHT: pytest.approx(0.3), T.MIN_P: pytest.approx(0.1), T.SEED: 4}


def test_cli_server_error_is_one_line(serve, tmp_path, capsys):
    _, url = serve(lambda text, fake: ["INVALID_ARGUMENT: voice: unknown voice 'bob'; known: tara, leo"])
    assert main(["speech", "Hi there you.", "--voice", "bob", "--out", str(tmp_path / "a.wav"), "--url", url]) == 1
    assert capsys.readouterr().err == "error: INVALID_ARGUMENT: voice: unknown voice 'bob'; known: tara, leo\n"
