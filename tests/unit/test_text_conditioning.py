"""The prompt tokenizer served as `musicgen_tokenizer` (the first step of the `musicgen_text_conditioning`
ensemble), on the tiny-random export's tokenizer: bucket widths, the too-long refusal, and the in-process chain."""

import numpy as np
import pytest

from tritone.ensemble import tensors as T
from tritone.ensemble.musicgen.onnx_lm import OnnxTextEncoder
from tritone.ensemble.musicgen.request import InvalidRequest
from tritone.ensemble.musicgen.spec import MAX_TEXT_TOKENS
from tritone.ensemble.musicgen.text_conditioning import (
    BUCKETS,
    PromptTokenizer,
    TextConditioning,
    bucket,
    prompts_of,
    tokenizer_dir,
)


@pytest.fixture(scope="module")
def tokenizer(tiny_repository):
    return PromptTokenizer(tokenizer_dir(tiny_repository), MAX_TEXT_TOKENS)


def words(n: int) -> str:
    return " ".join(["drums"] * n)  # one token a word, and the tokenizer appends </s>


def test_a_length_goes_to_the_smallest_bucket_that_holds_it_capped_at_the_limit():
    assert BUCKETS == (16, 32, 64, 128, 256, 512)
    assert [bucket(n, 256) for n in (1, 16, 17, 32, 33, 100, 129, 256)] == [16, 16, 32, 32, 64, 128, 256, 256]
    assert bucket(300, 400) == 400 and bucket(10, 8) == 8  # a limit between buckets or below the first


def test_prompts_are_padded_to_the_bucket_of_the_longest_with_a_mask_of_their_real_tokens(tokenizer):
    ids, mask = tokenizer([words(3), words(20)])
    assert ids.dtype == mask.dtype == np.int64 and ids.shape == mask.shape == (2, 32)
    assert mask.sum(axis=1).tolist() == [4, 21]
    assert mask[0, :4].all() and not mask[0, 4:].any() and not mask[1, 21:].any()
    assert (ids[mask == 0] == 0).all()  # <pad>
    assert ids[0, 3] == ids[1, 20] == 1  # </s> ends each prompt
    alone, _ = tokenizer([words(3)])
    np.testing.assert_array_equal(alone, ids[:1, :16])  # batched or not, a prompt's ids are the same
    assert tokenizer([words(15)])[0].shape == (1, 16) and tokenizer([words(16)])[0].shape == (1, 32)


def test_a_prompt_of_exactly_the_limit_fits_and_one_token_more_is_refused_not_truncated(tokenizer):
    ids, mask = tokenizer([words(MAX_TEXT_TOKENS - 1)])
    assert ids.shape == (1, MAX_TEXT_TOKENS) and mask.all()
    with pytest.raises(InvalidRequest) as error:
        tokenizer(["lo-fi piano", words(MAX_TEXT_TOKENS)])
    assert str(error.value) == "text: is 257 tokens long; the limit is 256"
    assert error.value.field == T.TEXT
    with pytest.raises(InvalidRequest, match=r"^text: is 601 tokens long; the limit is 256$"):
        tokenizer([words(600)])


def test_a_bytes_tensor_of_prompts_is_decoded_and_text_that_is_not_utf8_is_refused():
    assert prompts_of(np.array([["piano".encode()], ["ça va".encode()]], dtype=object)) == ["piano", "ça va"]
    with pytest.raises(InvalidRequest, match=r"^text: must be UTF-8 text$"):
        prompts_of(np.array([[b"\xff\xfe"]], dtype=object))


def test_the_in_process_chain_is_the_tokenizer_then_the_text_encoder(tiny_repository, tokenizer):
    encoder = OnnxTextEncoder(tiny_repository / T.MUSICGEN_TEXT_ENCODER / "1" / T.ONNX_FILE)
    hidden, mask = TextConditioning(tokenizer, encoder)(["lo-fi piano with rain", "drums"])
    ids, expected_mask = tokenizer(["lo-fi piano with rain", "drums"])
    np.testing.assert_array_equal(mask, expected_mask)
    np.testing.assert_array_equal(hidden, encoder(ids, expected_mask))
    assert hidden.shape[:2] == (2, 16)


def test_the_export_keeps_one_copy_of_the_tokenizer_in_the_tokenizer_model_s_folder(tiny_repository):
    assert (tokenizer_dir(tiny_repository) / "tokenizer.json").is_file()
    assert not (tiny_repository / T.MUSICGEN / "1" / "tokenizer").exists()
    assert (tiny_repository / T.MUSICGEN_TEXT_CONDITIONING / "1").is_dir()  # an ensemble's (empty) version folder
