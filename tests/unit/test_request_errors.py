"""Every refusal names the API field and the rule, through the real FastAPI app: bodies that are not JSON,
numbers that are not finite or not numbers, text with nothing visible, and Triton's refusals, which name
its tensors (`text`), mapped back to the route's field (`prompt`, `input`)."""

import time

import pytest
from fastapi.testclient import TestClient

from tritone.gateway.errors import APIError, with_api_fields
from tritone.gateway.main import create_app
from tritone.gateway.schemas import MUSIC_FIELDS, SPEECH_FIELDS
from tritone.gateway.settings import Settings
from tests.unit.test_speech_client import start_fake
from tests.gateway.test_speech import speak

TOO_LONG = "INVALID_ARGUMENT: text: is 612 tokens long; the limit is 256"
INVISIBLE = "must contain visible text"


def triton_script(text, fake):
    """Triton's answer: a refusal naming its `text` tensor for a text starting "long", else speech."""
    return [TOO_LONG] if text.startswith("long") else speak(text, fake)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    fake, url, server = start_fake(triton_script)
    settings = Settings(triton_grpc_url=url, data_dir=tmp_path_factory.mktemp("gateway"), job_workers=1)
    try:
        with TestClient(create_app(settings)) as client:
            yield client
    finally:
        server.stop(None)


def error_of(response) -> tuple[int, str | None, str]:
    error = response.json()["error"]
    return response.status_code, error["param"], error["message"]


MUSIC, SPEECH, JOBS = "/v1/audio/music", "/v1/audio/speech", "/v1/jobs"


@pytest.mark.parametrize(("path", "raw", "status", "param", "message"), [
    (MUSIC, b'{"prompt": "x", "duration": }', 400, None, "body: invalid JSON at position 28: Expecting value"),
    (SPEECH, b'{"input": "x",}', 400, None, "body: invalid JSON at position 14: Expecting property name"),
    (MUSIC, b'{"prompt": "\xff\xfe piano"}', 400, None, "body: is not UTF-8 text (byte 0xff at position 12)"),
    (SPEECH, b"[" * 100_000 + b"]" * 100_000, 400, None, "body: the JSON is nested too deeply"),
    (MUSIC, b'"a string"', 400, None, "body: Input should be a valid dictionary"),
    (MUSIC, b'{"prompt": "x", "duration": NaN}', 400, "duration", "duration: must be a finite number, got nan"),
    (MUSIC, b'{"prompt": "x", "temperature": 1e999}', 400, "temperature",
     "temperature: must be a finite number, got inf"),
    (SPEECH, b'{"input": "x", "speed": -Infinity}', 400, "speed", "speed: must be a finite number, got -inf"),
    (JOBS, b'{"prompt": "x", "duration": NaN}', 400, "duration", "duration: must be a finite number, got nan"),
], ids=["json-syntax-music", "json-syntax-speech", "invalid-utf8", "deep-nesting", "not-an-object", "nan",
        "overflow-to-inf", "minus-infinity", "nan-job"])
def test_a_body_that_is_not_json_or_a_number_that_is_not_finite(client, path, raw, status, param, message):
    reply = client.post(path, content=raw, headers={"Content-Type": "application/json"})
    assert error_of(reply)[:2] == (status, param)
    assert error_of(reply)[2].startswith(message), error_of(reply)


@pytest.mark.parametrize(("path", "body", "param", "message"), [
    (MUSIC, {"prompt": "\x00\x00\x00"}, "prompt", INVISIBLE),
    (MUSIC, {"prompt": "\x01\x1b\x7f\x9f"}, "prompt", INVISIBLE),
    (MUSIC, {"prompt": "\u200b\u200c\u200d\u2060\ufeff"}, "prompt", INVISIBLE),
    (MUSIC, {"prompt": " \n\t "}, "prompt", "prompt: must not be blank"),
    (SPEECH, {"input": "\x00"}, "input", INVISIBLE),
    (SPEECH, {"input": "\u200b \u200d"}, "input", INVISIBLE),
    (JOBS, {"prompt": "\x00\u200b"}, "prompt", INVISIBLE),
    (MUSIC, {"prompt": "x", "duration": "5"}, "duration", "duration: Input should be a valid number"),
    (MUSIC, {"prompt": "x", "duration": True}, "duration", "duration: Input should be a valid number"),
    (MUSIC, {"prompt": "x", "top_k": "50"}, "top_k", "top_k: Input should be a valid integer"),
    (MUSIC, {"prompt": "x", "stream": "yes"}, "stream", "stream: Input should be a valid boolean"),
    (MUSIC, {"prompt": "x", "seed": True}, "seed", "seed: must be an integer, not a boolean"),
    (SPEECH, {"input": "x", "speed": "1.5"}, "speed", "speed: Input should be a valid number"),
    (SPEECH, {"input": "x", "top_k": True}, "top_k", "top_k: Input should be a valid integer"),
    (JOBS, {"prompt": "x", "duration": "60"}, "duration", "duration: Input should be a valid number"),
], ids=["nul-only", "control-only", "zero-width-only", "whitespace-only", "speech-nul", "speech-zero-width",
        "job-invisible", "string-number", "bool-number", "string-int", "string-bool", "bool-seed",
        "speech-string-speed", "speech-bool-top-k", "job-string-duration"])
def test_a_bad_field_is_a_400_naming_it_and_the_rule(client, path, body, param, message):
    status, named, said = error_of(client.post(path, json=body))
    assert (status, named) == (400, param) and message in said


@pytest.mark.parametrize(("path", "body"), [
    (MUSIC, {"prompt": "piano \u200b", "duration": 0.5, "seed": "42"}),  # a seed may be an integer string
    (SPEECH, {"input": "Hello\u200b there.", "speed": 2, "seed": 7, "response_format": "pcm"}),
])
def test_text_with_something_visible_and_integer_numbers_are_accepted(client, path, body):
    assert client.post(path, json=body).status_code == 200


@pytest.mark.parametrize(("path", "body", "param"), [
    (MUSIC, {"prompt": "long " * 400}, "prompt"),
    (SPEECH, {"input": "long words", "response_format": "pcm"}, "input"),
])
def test_tritons_refusal_names_the_routes_field_not_its_tensor(client, path, body, param):
    assert error_of(client.post(path, json=body)) == (400, param, f"{param}: is 612 tokens long; the limit is 256")


def test_a_job_refused_by_triton_fails_naming_the_prompt(client):
    job = client.post(JOBS, json={"prompt": "long prompt", "duration": 1}).json()
    deadline = time.monotonic() + 30
    while (job := client.get(f"{JOBS}/{job['id']}").json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    assert (job["status"], job["error"]) == ("failed", "prompt: is 612 tokens long; the limit is 256")


@pytest.mark.parametrize(("fields", "param", "message"), [
    (SPEECH_FIELDS, "voice", "voice: holds 31.0 s of audio; the limit is 30 s"),
    (MUSIC_FIELDS, "reference_codes", "reference_codes: holds 31.0 s of audio; the limit is 30 s"),  # not a music field
])
def test_tensor_names_map_to_the_routes_fields(fields, param, message):
    error = APIError(400, "reference_codes: holds 31.0 s of audio; the limit is 30 s", param="reference_codes")
    mapped = with_api_fields(error, fields)
    assert (mapped.status, mapped.param, mapped.message) == (400, param, message)
