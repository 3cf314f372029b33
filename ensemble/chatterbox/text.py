"""Chatterbox's text front end: the punctuation clean-up its model was trained with, then its tokenizer.

The tokenizer (`tokenizer.json`, a `tokenizers` BPE over characters) writes spaces as the `[SPACE]`
token; the LM's prompt is `[start_text] ids [stop_text]`. The clean-up matters for quality, not
validity: the model rarely saw typographic quotes, ellipses or a sentence without its final stop.
"""

from __future__ import annotations

from pathlib import Path

SPACE = "[SPACE]"
EMPTY_TEXT = "You need to add some text for me to talk."  # what the reference speaks for empty input

# rarely seen punctuation -> what the model saw instead, applied in this order
_REPLACEMENTS = (("...", ", "), ("\u2026", ", "), (":", ","), (" - ", ", "), (";", ", "), ("\u2014", "-"),
                 ("\u2013", "-"), (" ,", ","), ("\u201c", '"'), ("\u201d", '"'), ("\u2018", "'"), ("\u2019", "'"))
_SENTENCE_ENDS = (".", "!", "?", "-", ",")


def normalize(text: str) -> str:
    """Capital first letter, single spaces, common punctuation, and a closing stop when none ends it."""
    if not text:
        return EMPTY_TEXT
    if text[0].islower():
        text = text[0].upper() + text[1:]
    text = " ".join(text.split())
    for rare, usual in _REPLACEMENTS:
        text = text.replace(rare, usual)
    text = text.rstrip(" ")
    return text if text.endswith(_SENTENCE_ENDS) else text + "."


class TextTokenizer:
    def __init__(self, path: Path):
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(path))

    def ids(self, text: str) -> list[int]:
        """Normalized text -> token ids (without the start and stop tokens)."""
        return self._tokenizer.encode(normalize(text).replace(" ", SPACE)).ids
