"""ensemble/triton/glue.py (and musicgen's Triton model on it) against a small fake of triton_python_backend_utils (no Triton here)."""

import importlib
import json
import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest

from tritone.ensemble import tensors as T
from tritone.ensemble.musicgen.request import InvalidRequest, Limits, validate
from tritone.ensemble.engine.scheduler import AtCapacity, Chunk

FINAL = 1


def fake_backend_utils() -> types.ModuleType:
    pb = types.ModuleType("triton_python_backend_utils")

    class Tensor:
        def __init__(self, name, array):
            self._name, self._array = name, np.asarray(array)

        def name(self):
            return self._name

        def as_numpy(self):
            return self._array

    class InferenceResponse:
        def __init__(self, output_tensors=(), error=None):
            self.outputs = {tensor.name(): tensor.as_numpy() for tensor in output_tensors}
            self.error = error

    class TritonError:
        INVALID_ARG, UNAVAILABLE, INTERNAL = 3, 14, 13

        def __init__(self, message, code=INTERNAL):
            self._message, self.code = message, code

        def message(self):
            return self._message

    pb.Tensor, pb.InferenceResponse, pb.TritonError = Tensor, InferenceResponse, TritonError
    pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL = FINAL
    pb.get_input_tensor_by_name = lambda request, name: request.inputs.get(name)
    return pb


GLUE_MODULES = ("tritone.ensemble.triton.glue", "tritone.ensemble.musicgen.triton")


@pytest.fixture(scope="module")
def glue():
    """The glue, and musicgen's Triton model on it, imported over the fake backend utils."""
    with pytest.MonkeyPatch.context() as patch:
        pb = fake_backend_utils()
        patch.setitem(sys.modules, "triton_python_backend_utils", pb)
        for name in GLUE_MODULES:
            patch.delitem(sys.modules, name, raising=False)
        module, musicgen = (importlib.import_module(name) for name in GLUE_MODULES)
        module.MusicgenTritonModel = musicgen.MusicgenTritonModel
        module.MusicgenTokenizerTritonModel = musicgen.MusicgenTokenizerTritonModel
        yield module
    for name in GLUE_MODULES:
        sys.modules.pop(name, None)


class Request:
    def __init__(self, glue, sender=None, **arrays):
        pb = sys.modules["triton_python_backend_utils"]
        self.inputs = {name: pb.Tensor(name, array) for name, array in arrays.items()}
        self.sender = sender

    def get_response_sender(self):
        return self.sender

    def request_id(self):  # pb_utils.InferenceRequest: the client's gRPC request id
        return "req_glue"


class Sender:
    def __init__(self):
        self.sent: list[tuple] = []  # (response or None, flags)
        self.client_cancelled = False

    def is_cancelled(self):
        return self.client_cancelled

    def send(self, response=None, flags=0):
        self.sent.append((response, flags))


# --- read_scalars ---------------------------------------------------------------


def test_read_scalars_returns_present_inputs_as_python_values_and_skips_absent_ones(glue):
    request = Request(
        glue,
        text=np.array([b"lo-fi piano"], dtype=object),
        duration=np.array([2.5], np.float32),
        top_k=np.array([7], np.int32),
        return_codes=np.array([True]),
    )
    values = glue.read_scalars(request, glue.MusicgenTritonModel.SCALARS)
    assert values == {T.TEXT: b"lo-fi piano", T.DURATION: 2.5, T.TOP_K: 7, T.RETURN_CODES: True}
    assert type(values[T.TOP_K]) is int and type(values[T.DURATION]) is float


@pytest.mark.parametrize("array, shape", [(np.array([1.0, 2.0], np.float32), [2]), (np.zeros((0,), np.float32), [0])])
def test_read_scalars_refuses_an_input_without_exactly_one_element_naming_it(glue, array, shape):
    request = Request(glue, text=np.array([b"piano"], dtype=object), duration=array)
    with pytest.raises(InvalidRequest) as caught:
        glue.read_scalars(request, (T.TEXT, T.DURATION))
    assert caught.value.field == T.DURATION
    assert str(caught.value) == f"duration: must hold exactly one value, got shape {shape}"


# --- TritonStream ----------------------------------------------------------------


def chunk(index, final, codes=None):
    return Chunk(index, np.full(640 * (index + 1), 0.5, np.float32), codes, final)


def test_only_the_final_chunk_carries_the_final_flag_and_nothing_is_sent_after_it(glue):
    sender = Sender()
    stream = glue.TritonStream(sender, 32000)
    stream.send(chunk(0, False))
    stream.send(chunk(1, True))
    stream.send(chunk(2, True))
    stream.fail(RuntimeError("late"))
    stream.close()
    assert [flags for _, flags in sender.sent] == [0, FINAL]
    first, last = sender.sent[0][0], sender.sent[1][0]
    assert set(first.outputs) == {T.AUDIO, T.CHUNK_INDEX, T.SAMPLE_RATE}
    assert first.outputs[T.CHUNK_INDEX].tolist() == [0] and last.outputs[T.CHUNK_INDEX].tolist() == [1]
    assert first.outputs[T.CHUNK_INDEX].dtype == np.int32
    assert first.outputs[T.SAMPLE_RATE].tolist() == [32000] and first.outputs[T.SAMPLE_RATE].dtype == np.int32
    assert last.outputs[T.AUDIO].shape == (1280,)
    assert stream.cancelled()  # the engine treats a finished stream as gone


def test_a_chunk_with_codes_also_sends_the_codes_output(glue):
    sender = Sender()
    codes = np.arange(8, dtype=np.int64).reshape(4, 2)
    glue.TritonStream(sender, 32000).send(chunk(0, False, codes))
    np.testing.assert_array_equal(sender.sent[0][0].outputs[T.CODES], codes)


@pytest.mark.parametrize(
    "error, prefix, code",
    [
        (InvalidRequest(T.DURATION, "must be in (0, 30] seconds, got 0"), "INVALID_ARGUMENT: duration:", 3),
        (AtCapacity("musicgen is at capacity"), "UNAVAILABLE: musicgen is at capacity", 14),
        (RuntimeError("boom"), "INTERNAL: boom", 13),
    ],
)
def test_fail_sends_one_final_error_whose_message_starts_with_the_status(glue, error, prefix, code):
    sender = Sender()
    stream = glue.TritonStream(sender, 32000)
    stream.fail(error)
    stream.fail(error)
    [(response, flags)] = sender.sent
    assert flags == FINAL
    assert response.outputs == {}
    assert response.error.message().startswith(prefix)
    assert response.error.code == code


def test_an_error_without_a_message_is_named_by_its_type(glue):
    sender = Sender()
    glue.TritonStream(sender, 32000).fail(RuntimeError())
    assert sender.sent[0][0].error.message() == "INTERNAL: RuntimeError"


def test_close_sends_exactly_one_final_flag_without_a_response(glue):
    sender = Sender()
    stream = glue.TritonStream(sender, 32000)
    stream.send(chunk(0, False))
    stream.close()
    stream.close()
    stream.send(chunk(1, True))
    assert sender.sent[1:] == [(None, FINAL)]
    assert len(sender.sent) == 2


def test_a_stream_is_cancelled_when_its_client_cancels(glue):
    sender = Sender()
    stream = glue.TritonStream(sender, 32000)
    assert not stream.cancelled()
    sender.client_cancelled = True
    assert stream.cancelled()


# --- MusicgenMetadata.execute ---------------------------------------------------------


def pipeline_stub(submit_error=None):
    submitted = []

    def submit(requests):
        if submit_error is not None:
            raise submit_error
        submitted.extend(requests)

    return SimpleNamespace(
        model=SimpleNamespace(sample_rate=32000),
        validate=lambda raw: validate(raw, Limits(), 64),
        submit=submit,
        submitted=submitted,
    )


def test_execute_fails_an_invalid_request_with_invalid_argument_naming_the_field(glue):
    model = glue.MusicgenTritonModel()
    model.pipeline = pipeline_stub()
    sender = Sender()
    assert model.execute([Request(glue, sender, text=np.array([b"piano"], dtype=object))]) is None
    [(response, flags)] = sender.sent
    assert flags == FINAL
    assert response.error.message().startswith("INVALID_ARGUMENT: duration:")
    assert model.pipeline.submitted == []


def test_execute_fails_a_request_refused_at_capacity_as_unavailable(glue):
    model = glue.MusicgenTritonModel()
    model.pipeline = pipeline_stub(AtCapacity("musicgen is at capacity"))
    sender = Sender()
    model.execute([Request(glue, sender, text=np.array([b"piano"], dtype=object), duration=np.array([1.0], np.float32))])
    [(response, flags)] = sender.sent
    assert flags == FINAL and response.error.message() == "UNAVAILABLE: musicgen is at capacity"


def test_execute_submits_a_valid_request_with_its_own_stream(glue):
    model = glue.MusicgenTritonModel()
    model.pipeline = pipeline_stub()
    sender = Sender()
    model.execute([Request(glue, sender, text=np.array([b"piano"], dtype=object), duration=np.array([1.0], np.float32),
                           seed=np.array([3], np.int64))])
    [(params, stream)] = model.pipeline.submitted
    assert (params.text, params.duration, params.seed) == ("piano", 1.0, 3)
    assert sender.sent == []
    stream.close()
    assert sender.sent == [(None, FINAL)]


# --- OnnxBatchModel ---------------------------------------------------------------


class RecordingSession:
    """Output row = ids * 10 + mask, so each row can be traced back to its request."""

    def __init__(self):
        self.feeds = []

    def run(self, names, feed):
        self.feeds.append(feed)
        assert names == [T.ENCODER_HIDDEN_STATES]
        return [(feed[T.INPUT_IDS] * 10 + feed[T.ATTENTION_MASK]).astype(np.float32)]


def encoder(glue):
    class Encoder(glue.OnnxBatchModel):
        input_names = (T.INPUT_IDS, T.ATTENTION_MASK)
        output_name = T.ENCODER_HIDDEN_STATES

    model = Encoder()
    model.session = RecordingSession()
    return model


def encoder_request(glue, ids):
    ids = np.asarray(ids, np.int64)
    return Request(glue, input_ids=ids, attention_mask=(ids % 2))


def test_execute_runs_equal_shapes_as_one_batch_and_splits_it_back_per_request(glue):
    model = encoder(glue)
    requests = [encoder_request(glue, [[1, 2, 3], [4, 5, 6]]), encoder_request(glue, [[7, 8, 9]])]
    responses = model.execute(requests)
    [feed] = model.session.feeds
    assert feed[T.INPUT_IDS].shape == (3, 3)
    assert len(responses) == 2
    np.testing.assert_array_equal(responses[0].outputs[T.ENCODER_HIDDEN_STATES], [[11, 20, 31], [40, 51, 60]])
    np.testing.assert_array_equal(responses[1].outputs[T.ENCODER_HIDDEN_STATES], [[71, 80, 91]])


def test_execute_runs_different_shapes_separately_and_keeps_request_order(glue):
    model = encoder(glue)
    requests = [encoder_request(glue, [[1, 2]]), encoder_request(glue, [[3, 4, 5]]), encoder_request(glue, [[6, 7]])]
    responses = model.execute(requests)
    assert sorted(feed[T.INPUT_IDS].shape for feed in model.session.feeds) == [(1, 3), (2, 2)]
    outputs = [r.outputs[T.ENCODER_HIDDEN_STATES].tolist() for r in responses]
    assert outputs == [[[11, 20]], [[31, 40, 51]], [[60, 71]]]


def test_a_model_with_several_outputs_sends_each_requests_rows_of_every_output(glue):
    class TwoOutputs(glue.OnnxBatchModel):
        input_names = (T.INPUT_IDS,)
        output_names = (T.AUDIO, T.CODES)

    class Session:
        def run(self, names, feed):
            assert names == [T.AUDIO, T.CODES]
            return [feed[T.INPUT_IDS] * 2.0, feed[T.INPUT_IDS] + 100]

    model = TwoOutputs()
    model.session = Session()
    ids = lambda rows: np.asarray(rows, np.int64)  # noqa: E731
    responses = model.execute([Request(glue, input_ids=ids([[1, 2], [3, 4]])), Request(glue, input_ids=ids([[5, 6]]))])
    np.testing.assert_array_equal(responses[0].outputs[T.AUDIO], [[2, 4], [6, 8]])
    np.testing.assert_array_equal(responses[0].outputs[T.CODES], [[101, 102], [103, 104]])
    np.testing.assert_array_equal(responses[1].outputs[T.AUDIO], [[10, 12]])
    np.testing.assert_array_equal(responses[1].outputs[T.CODES], [[105, 106]])


# --- musicgen_tokenizer and refusals passed back through BLS --------------------------------


def test_the_tokenizer_model_answers_each_request_in_its_own_bucket_and_refuses_a_long_prompt_alone(
        glue, tiny_repository):
    model = glue.MusicgenTokenizerTritonModel()
    model.initialize({"model_repository": str(tiny_repository / T.MUSICGEN_TOKENIZER), "model_version": "1",
                      "model_config": json.dumps({"parameters": {"max_text_tokens": {"string_value": "256"}}})})
    texts = [[b"lo-fi piano with rain"], [b"drums " * 300], [b"drums", b"drums " * 20]]
    responses = model.execute([Request(glue, text=np.array(rows, dtype=object).reshape(-1, 1)) for rows in texts])
    first, refused, pair = responses
    assert first.error is None and pair.error is None
    assert first.outputs[T.INPUT_IDS].shape == first.outputs[T.ATTENTION_MASK].shape == (1, 16)
    assert first.outputs[T.ATTENTION_MASK].sum() == 7  # lo - fi piano with rain, and </s>
    assert pair.outputs[T.INPUT_IDS].shape == (2, 32)  # the request's longest prompt (21 tokens) sets its bucket
    assert pair.outputs[T.ATTENTION_MASK].sum(axis=1).tolist() == [2, 21]
    assert refused.outputs == {}
    assert (refused.error.message(), refused.error.code) == ("text: is 301 tokens long; the limit is 256", 3)


@pytest.mark.parametrize(("message", "expected"), [
    ("in ensemble 'musicgen_text_conditioning', text: is 301 tokens long; the limit is 256",
     "text: is 301 tokens long; the limit is 256"),
    ("text: must be UTF-8 text", "text: must be UTF-8 text"),
    ("in ensemble 'musicgen_text_conditioning', unexpected shape for input 'text'", None),  # Triton's, not a refusal
    ("duration: not an input that was sent", None),
])
def test_a_callee_s_refusal_of_an_input_it_was_sent_is_the_caller_s_invalid_request(glue, message, expected):
    error = glue.refusal(message, (T.TEXT,))
    assert (None if error is None else str(error)) == expected
    assert error is None or error.field == T.TEXT
