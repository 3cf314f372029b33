"""Request validation: every bad value is refused with InvalidRequest naming its field."""

import math

import pytest

from tritone.ensemble import tensors as T
from tritone.ensemble.musicgen.request import GenerationParams, InvalidRequest, Limits, validate

LIMITS = Limits(max_duration_s=30.0, max_text_chars=20, max_text_tokens=256)
CODEBOOK_SIZE = 64


def request(**fields):
    return {T.TEXT: "lo-fi piano", T.DURATION: 2.0, **fields}


@pytest.mark.parametrize(
    "field, value",
    [
        (T.TEXT, ""),
        (T.TEXT, "   \n\t"),
        (T.TEXT, b"\xff\xfe piano"),
        (T.TEXT, "x" * 21),
        (T.TEXT, None),
        (T.TEXT, 42),
        (T.DURATION, None),
        (T.DURATION, 0.0),
        (T.DURATION, -1.0),
        (T.DURATION, math.nan),
        (T.DURATION, math.inf),
        (T.DURATION, 30.5),
        (T.TEMPERATURE, -0.1),
        (T.TEMPERATURE, math.nan),
        (T.TEMPERATURE, 10.5),
        (T.TOP_K, CODEBOOK_SIZE + 1),
        (T.TOP_K, -1),
        (T.TOP_P, 0.0),
        (T.TOP_P, 1.01),
        (T.TOP_P, math.nan),
        (T.GUIDANCE_SCALE, 0.99),
        (T.GUIDANCE_SCALE, 0.0),
        (T.GUIDANCE_SCALE, 20.5),
        (T.SEED, -1),
    ],
)
def test_a_bad_value_raises_invalid_request_naming_the_field(field, value):
    with pytest.raises(InvalidRequest) as caught:
        validate(request(**{field: value}), LIMITS, CODEBOOK_SIZE)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


def test_a_missing_text_is_refused_as_text():
    with pytest.raises(InvalidRequest) as caught:
        validate({T.DURATION: 1.0}, LIMITS, CODEBOOK_SIZE)
    assert caught.value.field == T.TEXT


def test_a_missing_duration_is_refused_as_duration():
    with pytest.raises(InvalidRequest, match="^duration: is required") as caught:
        validate({T.TEXT: "piano"}, LIMITS, CODEBOOK_SIZE)
    assert caught.value.field == T.DURATION


def test_too_long_text_reports_its_length_and_the_limit():
    with pytest.raises(InvalidRequest, match="^text: is 21 characters; the limit is 20$"):
        validate(request(text="x" * 21), LIMITS, CODEBOOK_SIZE)


def test_invalid_request_is_a_value_error():
    assert issubclass(InvalidRequest, ValueError)


def test_absent_optional_fields_take_their_defaults():
    params = validate(request(), LIMITS, CODEBOOK_SIZE)
    assert params == GenerationParams(
        text="lo-fi piano", duration=2.0, temperature=1.0, top_k=CODEBOOK_SIZE, top_p=1.0,
        guidance_scale=3.0, seed=None, return_codes=False,
    )


def test_default_top_k_is_250_when_the_codebook_is_larger():
    assert validate(request(), LIMITS, 2048).top_k == 250


def test_default_top_k_is_the_codebook_size_when_it_is_smaller_than_250():
    assert validate(request(), LIMITS, 64).top_k == 64


def test_utf8_bytes_are_decoded_and_boundary_values_are_accepted():
    params = validate(
        {T.TEXT: "café jazz".encode(), T.DURATION: 30.0, T.TEMPERATURE: 0.0, T.TOP_K: 0, T.TOP_P: 1.0,
         T.GUIDANCE_SCALE: 1.0, T.SEED: 0, T.RETURN_CODES: True},
        LIMITS, CODEBOOK_SIZE,
    )
    assert params == GenerationParams(
        text="café jazz", duration=30.0, temperature=0.0, top_k=0, top_p=1.0,
        guidance_scale=1.0, seed=0, return_codes=True,
    )


def test_guidance_above_one_uses_two_decoder_rows_and_one_disables_it():
    assert validate(request(guidance_scale=1.5), LIMITS, CODEBOOK_SIZE).rows == 2
    assert validate(request(guidance_scale=1.0), LIMITS, CODEBOOK_SIZE).rows == 1
