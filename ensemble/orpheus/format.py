"""The Orpheus token format: how text, a cloned voice and SNAC codes share one Llama vocabulary.

Orpheus extends a Llama tokenizer of `text_vocab_size` tokens (128256 for Llama 3) with 10
control tokens and 7 blocks of `codebook_size` audio tokens, one block per position in a frame:

    text_vocab_size + 1  start_of_speech      + 2  end_of_speech (generation stops here)
                    + 3  start_of_human       + 4  end_of_human
                    + 5  start_of_ai          + 6  end_of_ai
                    + 10 first audio token: position k of a frame, code c -> audio_start + k * codebook_size + c

A frame is 7 tokens over SNAC's 3 levels at 1, 2 and 4 codes per 2048 samples:
[level0, level1a, level2a, level2b, level1b, level2c, level2d].

Prompt layout (what `prompt_ids` builds, and what the reference tests hand to `generate()`):

    [start_of_human] text_ids(tokenizer, with BOS) [eot, end_of_human, start_of_ai, start_of_speech]

where the text is "voice: text" for a speaker the checkpoint was fine-tuned on. Zero-shot
cloning prefixes one finished turn made of the reference clip's transcript and codes:

    [start_of_human] transcript_ids [eot, end_of_human, start_of_ai, start_of_speech]
        reference audio tokens [end_of_speech, end_of_ai]  + the prompt above

Generation is constrained to this grammar (`allowed`): token i of the answer must be a code
for frame position i % 7, and end_of_speech may only end a whole frame. A trained checkpoint
follows it anyway; sampling among the allowed tokens only keeps a bad sample from ever
reaching the codec as an invalid code.
Pure numpy: the engine, the exporter and the tests share it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOKENS_PER_FRAME = 7
# frame position -> SNAC level, and the index of that code within its level for one frame
FRAME_LEVELS = (0, 1, 2, 2, 1, 2, 2)
FRAME_OFFSETS = (0, 0, 0, 1, 1, 2, 3)
LEVEL_CODES = (1, 2, 4)  # codes per frame at each level


@dataclass(frozen=True)
class OrpheusFormat:
    text_vocab_size: int = 128256
    bos_token_id: int = 128000
    eot_token_id: int = 128009
    codebook_size: int = 4096
    vocab_size: int = 156940  # the LM's output width (may exceed the tokens used)

    @property
    def start_of_speech(self) -> int:
        return self.text_vocab_size + 1

    @property
    def end_of_speech(self) -> int:
        return self.text_vocab_size + 2

    @property
    def start_of_human(self) -> int:
        return self.text_vocab_size + 3

    @property
    def end_of_human(self) -> int:
        return self.text_vocab_size + 4

    @property
    def start_of_ai(self) -> int:
        return self.text_vocab_size + 5

    @property
    def end_of_ai(self) -> int:
        return self.text_vocab_size + 6

    @property
    def pad_token_id(self) -> int:
        return self.text_vocab_size + 7

    @property
    def audio_start(self) -> int:
        return self.text_vocab_size + 10

    @property
    def audio_end(self) -> int:
        return self.audio_start + TOKENS_PER_FRAME * self.codebook_size

    def __post_init__(self):
        if self.audio_end > self.vocab_size:
            raise ValueError(f"{TOKENS_PER_FRAME} x {self.codebook_size} audio tokens after {self.audio_start} "
                             f"do not fit a vocabulary of {self.vocab_size}")

    # --- prompts ---------------------------------------------------------------------
    def turn(self, text_ids) -> list[int]:
        """One human turn asking for speech, ending where the answer's audio tokens begin."""
        return [self.start_of_human, *map(int, text_ids), self.eot_token_id, self.end_of_human,
                self.start_of_ai, self.start_of_speech]

    def prompt_ids(self, text_ids, reference_text_ids=None, reference_codes: np.ndarray | None = None) -> list[int]:
        """text_ids: the tokenized (BOS-prefixed) text; reference_*: a clip to clone, or None."""
        prefix: list[int] = []
        if reference_codes is not None:
            prefix = [*self.turn(reference_text_ids if reference_text_ids is not None else []),
                      *self.codes_to_tokens(reference_codes).tolist(), self.end_of_speech, self.end_of_ai]
        return prefix + self.turn(text_ids)

    def voice_prefix_length(self, prompt_ids) -> int:
        """How many of a prompt's first tokens every request cloning the same voice shares: the voice's
        whole turn (through end_of_ai), then the text turn's start_of_human and BOS. 0 without a cloned
        voice: a built-in speaker shares only the few tokens of its name, not worth caching."""
        ids = np.asarray(prompt_ids)
        ends = np.flatnonzero(ids == self.end_of_ai)
        if not ends.size:
            return 0
        length = int(ends[0]) + 1
        for token in (self.start_of_human, self.bos_token_id):
            if length >= ids.size or ids[length] != token:
                break
            length += 1
        return length

    # --- audio tokens <-> codes --------------------------------------------------------
    def codes_to_tokens(self, codes: np.ndarray) -> np.ndarray:
        """codes: int [7, frames] in frame layout -> the frame-major token ids [7 * frames]."""
        codes = np.asarray(codes, np.int64)
        offsets = self.audio_start + np.arange(TOKENS_PER_FRAME, dtype=np.int64)[:, None] * self.codebook_size
        return (codes + offsets).T.reshape(-1)

    def tokens_to_codes(self, tokens) -> np.ndarray:
        """Whole frames of audio tokens -> codes [7, frames]. Raises ValueError on a token out of place."""
        tokens = np.asarray(tokens, np.int64)
        if tokens.size % TOKENS_PER_FRAME:
            raise ValueError(f"{tokens.size} audio tokens is not a whole number of {TOKENS_PER_FRAME}-token frames")
        frames = tokens.reshape(-1, TOKENS_PER_FRAME).T
        codes = frames - self.audio_start - np.arange(TOKENS_PER_FRAME, dtype=np.int64)[:, None] * self.codebook_size
        if codes.size and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError("a token is not an audio code for its position in the frame")
        return codes

    # --- the answer's grammar -----------------------------------------------------------
    def allowed_range(self, generated: int) -> tuple[int, int]:
        """The audio tokens allowed as the answer's token number `generated` (0-based)."""
        start = self.audio_start + (generated % TOKENS_PER_FRAME) * self.codebook_size
        return start, start + self.codebook_size

    def allowed(self, generated: int, may_end: bool = True) -> np.ndarray:
        """Token ids allowed next, in vocabulary order (end_of_speech, where allowed, comes first).

        The engine samples among these only; tests hand them to `generate(prefix_allowed_tokens_fn=...)`."""
        start, end = self.allowed_range(generated)
        ids = np.arange(start, end, dtype=np.int64)
        if may_end and generated % TOKENS_PER_FRAME == 0:
            ids = np.insert(ids, 0, self.end_of_speech)
        return ids



def frame_to_levels(codes: np.ndarray) -> list[np.ndarray]:
    """codes [..., 7, frames] -> SNAC's levels [..., frames], [..., 2 * frames], [..., 4 * frames]."""
    codes = np.asarray(codes)
    frames = codes.shape[-1]
    levels = []
    for level, count in enumerate(LEVEL_CODES):
        rows = [k for k in range(TOKENS_PER_FRAME) if FRAME_LEVELS[k] == level]  # in offset order
        stacked = np.stack([codes[..., k, :] for k in rows], axis=-1)  # [..., frames, count]
        levels.append(stacked.reshape(*codes.shape[:-2], frames * count))
    return levels


def levels_to_frame(levels) -> np.ndarray:
    """The inverse of `frame_to_levels`."""
    frames = levels[0].shape[-1]
    codes = np.empty((*levels[0].shape[:-1], TOKENS_PER_FRAME, frames), np.int64)
    for k, (level, offset) in enumerate(zip(FRAME_LEVELS, FRAME_OFFSETS)):
        per_frame = np.asarray(levels[level]).reshape(*levels[level].shape[:-1], frames, LEVEL_CODES[level])
        codes[..., k, :] = per_frame[..., offset]
    return codes
