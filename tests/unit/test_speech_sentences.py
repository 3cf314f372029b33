"""client.sentences: long speech input split into one-request pieces by Unicode (UAX #29) rules."""

import pytest

from tritone.client.sentences import MAX_SENTENCE_CHARS, split_sentences, word_count
from tritone.ensemble.orpheus.spec import EXPRESSIVE_TAGS


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        # "Dr." ends a UAX #29 sentence (no abbreviation list): the one-word piece joins the next; "$3.50" stays whole
        ("Dr. Smith paid $3.50. Then he left!", ["Dr. Smith paid $3.50.", "Then he left!"]),
        ("今天天气很好。我们去公园吧。", ["今天天气很好。", "我们去公园吧。"]),
        ("日本語の文です。次の文です！最後ですか？", ["日本語の文です。", "次の文です！", "最後ですか？"]),
        # closing quotes stay with their sentence
        ('She said, "It is late." Then she left.', ['She said, "It is late."', "Then she left."]),
        # "?" then a quote ends a sentence; the short lower-case rest continues it
        ('"Where are you going?" she asked. "Home," he said.', ['"Where are you going?" she asked.', '"Home," he said.']),
        ("Wait... what?! Okay then, fine.", ["Wait... what?! Okay then, fine."]),
        ("¿Qué tal? ¡Muy bien! Gracias.", ["¿Qué tal? ¡Muy bien! Gracias."]),
        # paragraph breaks end sentences; whitespace inside a piece collapses to single spaces
        ("First line of text\nsecond line of   text.\n\nA new paragraph here.",
         ["First line of text", "second line of text.", "A new paragraph here."]),
        ("One sentence only.", ["One sentence only."]),
        ("   ", []),
        ("", []),
    ],
)
def test_sentences_follow_unicode_boundaries(text, pieces):
    assert split_sentences(text) == pieces


def test_a_long_sentence_splits_at_word_boundaries_preferring_clauses():
    sentence = ("The committee, after a long and careful review of every proposal that had been submitted during "
                "the spring session, decided that the funds would be allocated to the three projects that showed "
                "the most promise; the remaining applicants were invited to apply again next year with revised "
                "budgets and clearer timelines for delivery.")
    pieces = split_sentences(sentence, max_chars=120)
    assert pieces == [
        "The committee, after a long and careful review of every proposal that had been submitted during the "
        "spring session,",
        "decided that the funds would be allocated to the three projects that showed the most promise;",
        "the remaining applicants were invited to apply again next year with revised budgets and clearer "
        "timelines for delivery.",
    ]
    assert " ".join(pieces) == sentence


def test_long_text_without_clauses_splits_into_nearly_equal_whole_words():
    words = [f"word{i}" for i in range(100)]  # 6 or 7 characters each
    pieces = split_sentences(" ".join(words) + ".", max_chars=200)
    assert len(pieces) == 4 and all(len(piece) <= 200 for piece in pieces)
    assert max(map(len, pieces)) - min(map(len, pieces)) < 20  # no short tail
    assert " ".join(pieces).split() == [*words[:-1], "word99."]


def test_cjk_without_spaces_splits_between_characters_never_before_punctuation():
    text = "今天天气很好我们去公园吧然后去吃饭，" * 12 + "好。"
    pieces = split_sentences(text, max_chars=50)
    assert "".join(pieces) == text
    assert all(len(piece) <= 50 for piece in pieces)
    assert not any(piece.startswith("，") for piece in pieces)
    assert all(piece.endswith("，") for piece in pieces[:-1])  # cut after a clause mark, near equal shares


def test_a_word_longer_than_the_limit_is_cut_between_grapheme_clusters():
    url = "https://example.com/" + "e\u0301" * 60  # e + combining acute: never split apart
    pieces = split_sentences(url, max_chars=50)
    assert "".join(pieces) == url
    assert all(len(piece) <= 50 and not piece.startswith("\u0301") for piece in pieces)


def test_every_piece_fits_the_limit():
    text = "Short one. " * 3 + "A much longer sentence follows, with several clauses, and commas, " * 20 + "End here."
    pieces = split_sentences(text, max_chars=MAX_SENTENCE_CHARS)
    assert all(0 < len(piece) <= MAX_SENTENCE_CHARS for piece in pieces)
    assert " ".join(pieces).split() == text.split()


def test_short_pieces_are_not_merged_past_the_limit():
    assert split_sentences("Yes. No. Maybe so.", max_chars=10) == ["Yes. No.", "Maybe so."]


def test_word_count_ignores_punctuation_and_counts_cjk_characters():
    assert word_count("Dr. ") == 1
    assert word_count("Smith paid $3.50!") == 3
    assert word_count("我们去公园吧。") == 6


def test_max_chars_must_be_positive():
    with pytest.raises(ValueError, match="max_chars must be at least 1, got 0"):
        split_sentences("text", max_chars=0)


def test_expressive_tags_pass_through_whole_and_are_never_a_sentence_alone():
    text = " ".join(f"{tag} Well, that was something else entirely, wasn't it{'?' if i % 2 else '.'}"
                    for i, tag in enumerate(EXPRESSIVE_TAGS)) + " <laugh>"
    sentences = split_sentences(text, max_chars=40)
    assert " ".join(sentences).split() == text.split()  # nothing dropped, reordered or rewritten
    for tag in EXPRESSIVE_TAGS:
        assert sum(sentence.split().count(tag) for sentence in sentences) == text.split().count(tag)
    assert all(set(sentence.split()) - set(EXPRESSIVE_TAGS) for sentence in sentences)  # each has words
