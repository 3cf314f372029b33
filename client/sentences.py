"""Splitting text to speak into pieces of one request each: sentences, by Unicode's rules.

An Orpheus-format LM speaks one utterance per request; it was fine-tuned on sentence-length
clips, so a paragraph sent whole drifts, and its first audio waits for nothing but its own
prefill. Pieces are found with UAX #29 sentence boundaries (uniseg.sentencebreak), which
know about closing quotes and brackets, CJK full stops (。！？), decimals like "3.50", and
paragraph breaks, where a regex on periods does not. Then:

- a piece with fewer than `min_words` words is joined to a neighbour: UAX #29 breaks after
  "Dr." and "e.g." like after a full stop (it has no abbreviation list), and one-word
  utterances ("Yes.") sound better spoken with their neighbour. A short piece starting in
  lower case continues the sentence before it ('"Where to?" she asked.'); other short pieces
  join the next one ("Dr." + "Smith paid..."); a short last piece joins the one before;
- a sentence longer than `max_chars` is split at word boundaries (UAX #29 word breaks, so
  CJK text without spaces splits too), into nearly equal parts, preferring a clause boundary
  (after a comma, semicolon, colon or dash) near each cut; a "word" longer than `max_chars`
  (a URL) is cut between grapheme clusters, never inside one.

Whitespace inside a piece is collapsed to single spaces (newlines included).
"""

from __future__ import annotations

import math
import unicodedata

from uniseg.graphemecluster import grapheme_cluster_boundaries
from uniseg.sentencebreak import sentence_boundaries
from uniseg.wordbreak import word_boundaries, words

# About 20 s of speech: Orpheus' fine-tuning clips are sentence-length; the model takes at most 4096.
MAX_SENTENCE_CHARS = 300
MIN_WORDS = 3
CLAUSE_ENDS = frozenset(",;:—–-)]}…，、；：）")

Span = tuple[int, int]  # [start, end) into the text


def split_sentences(text: str, max_chars: int = MAX_SENTENCE_CHARS, min_words: int = MIN_WORDS) -> list[str]:
    """The pieces of `text` to speak in order, each at most `max_chars` characters; [] for blank text."""
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, got {max_chars}")
    spans: list[Span] = []
    for start, end in _sentence_spans(text):
        spans.extend(_split_long(text, start, end, max_chars))
    spans = _merge_short(text, spans, max_chars, min_words)
    return [" ".join(text[start:end].split()) for start, end in spans]


def word_count(text: str) -> int:
    """UAX #29 words with a letter or digit in them (punctuation and spaces are not words)."""
    return sum(1 for word in words(text) if any(ch.isalnum() for ch in word))


def _strip(text: str, start: int, end: int) -> Span:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _sentence_spans(text: str) -> list[Span]:
    bounds = list(sentence_boundaries(text)) if text else []
    spans = [_strip(text, a, b) for a, b in zip(bounds, bounds[1:])]
    return [(a, b) for a, b in spans if a < b]


def _can_cut(text: str, at: int) -> bool:
    """Not before punctuation ("word|, next") and not after an opening bracket or quote ("(|word")."""
    return (not unicodedata.category(text[at]).startswith("P")
            and unicodedata.category(text[at - 1]) not in ("Ps", "Pi"))


def _after_clause(text: str, start: int, at: int) -> bool:
    before = text[start:at].rstrip()
    return bool(before) and before[-1] in CLAUSE_ENDS


def _split_long(text: str, start: int, end: int, max_chars: int) -> list[Span]:
    pieces: list[Span] = []
    while end - start > max_chars:
        cut = _best_cut(text, start, end, max_chars)
        pieces.append(_strip(text, start, cut))
        start, _ = _strip(text, cut, end)
    return [*pieces, (start, end)] if start < end else pieces


def _best_cut(text: str, start: int, end: int, max_chars: int) -> int:
    """Where the first part of text[start:end] ends: a word boundary near an equal share of the length."""
    limit = start + max_chars
    target = start + (end - start) / math.ceil((end - start) / max_chars)
    candidates = [start + offset for offset in word_boundaries(text[start:end])]
    candidates = [at for at in candidates if start < at <= limit and _can_cut(text, at)]
    if candidates:
        # a clause boundary wins over a plain word boundary up to a quarter of a piece farther from the target
        return min(candidates, key=lambda at: abs(at - target) + (0 if _after_clause(text, start, at) else max_chars / 4))
    graphemes = [start + offset for offset in grapheme_cluster_boundaries(text[start:end])]
    return max((at for at in graphemes if start < at <= limit), default=limit)


def _merge_short(text: str, spans: list[Span], max_chars: int, min_words: int) -> list[Span]:
    def short(span: Span) -> bool:
        return word_count(text[span[0]:span[1]]) < min_words

    def fits(first: Span, last: Span) -> bool:
        return last[1] - first[0] <= max_chars

    merged: list[Span] = []
    pending: Span | None = None  # a short piece waiting for the next one
    for span in spans:
        if pending is not None:
            if fits(pending, span):
                span = (pending[0], span[1])
            else:
                merged.append(pending)
            pending = None
        if short(span):
            if text[span[0]].islower() and merged and fits(merged[-1], span):
                merged[-1] = (merged[-1][0], span[1])
            else:
                pending = span
            continue
        merged.append(span)
    if pending is not None:
        if merged and fits(merged[-1], pending):
            merged[-1] = (merged[-1][0], pending[1])
        else:
            merged.append(pending)
    return merged
