"""Chatterbox's decoding rules for the engine: T3's prompt of embeddings prefilled, then one speech token a step.

T3 reads embeddings, not token ids: the voice's conditioning (speaker token, perceiver tokens over
its speech prompt, an emotion token scaled by `exaggeration`: the `conditioning` graph, once per
request), the text (text table + learned text positions) and a start-of-speech token, which the
reference feeds twice (once closing its prompt, once opening generation); each sampled token goes
back in as speech table + learned speech position. With guidance (`cfg_weight` > 0) a request takes
two rows, as MusicGen's does: the second is unconditioned on the text (its text embeddings are the
position embeddings alone), and the logits are cond + w * (cond - uncond).

The conditioning is the same for every request in a voice and exaggeration, so it is the prompt's
cacheable prefix (the engine's prefix cache, keyed by a digest of both: `conditioning_prefix`).

Sampling applies the reference's order: guidance, the repetition penalty over the sampled tokens
(start-of-speech included), temperature, min-p, top-p. Stop-of-speech ends the stream; tokens at
or above the S3 codebook (6561) are fed back but never decoded, as the reference drops them. Every
valid token is a frame of 960 samples (two mel frames) for the flow and vocoder.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from tritone.ensemble.chatterbox.metadata import ChatterboxMetadata
from tritone.ensemble.chatterbox.request import ChatterboxParams
from tritone.ensemble.chatterbox.voice import Voice
from tritone.ensemble.engine.chunker import ChunkPolicy, Chunker, ChunkWindow
from tritone.ensemble.engine.sampling import repetition_penalty, sample
from tritone.ensemble.engine.scheduler import Slot, Stream
from tritone.ensemble.engine.step_plan import StepPlan


class ChatterboxLanguageModel(Protocol):
    """lm_step: ONNX Runtime on CPU, torch on a GPU (cache kept on the device)."""

    def zeros(self, shape: tuple[int, ...]): ...
    def step(self, inputs_embeds, positions, logit_index, past_keys, past_values): ...  # logits numpy [R, V]


class Conditioning(Protocol):
    """lm_conditioning: speaker_emb [B, 256], prompt_speech_tokens [B, P], exaggeration [B, 1] -> [B, Lc, D]."""

    def __call__(self, speaker_emb, prompt_speech_tokens, exaggeration) -> np.ndarray: ...


@dataclass(frozen=True, eq=False)
class EmbeddingTables:
    """T3's input tables (float32 [rows, hidden]), looked up by the family."""

    text: np.ndarray
    text_positions: np.ndarray
    speech: np.ndarray
    speech_positions: np.ndarray

    @classmethod
    def of(cls, tables: dict[str, np.ndarray]) -> "EmbeddingTables":
        """From the export's tables (ensemble/chatterbox/onnx_lm.py: load_tables)."""
        return cls(tables["text_emb"], tables["text_pos_emb"], tables["speech_emb"], tables["speech_pos_emb"])


class CodecInputs(Protocol):
    """What the flow needs beside a window's tokens (the voice, the request's noise): ensemble/chatterbox/codec.py."""

    def __call__(self, slot: "ChatterboxSlot", window: ChunkWindow) -> tuple[np.ndarray, ...]: ...


@dataclass(eq=False)
class ChatterboxJob:
    params: ChatterboxParams
    text_ids: np.ndarray  # int64: [start_text, ..., stop_text]
    voice: Voice
    token_limit: int  # max_duration, or where T3's speech positions end
    stream: Stream
    submitted: float = field(default_factory=time.monotonic)


def conditioning_key(voice: Voice, exaggeration: float) -> bytes:
    """What a prompt's conditioning embeddings depend on: the voice and the exaggeration."""
    return hashlib.sha256(voice.digest + np.float32(exaggeration).tobytes()).digest()


def conditioning_prefix(key: bytes, length: int) -> np.ndarray:
    """The prefix cache's ids for a prompt's conditioning (its first `length` inputs, the same for every request
    with this conditioning_key): the key as int64s, then positions to its length."""
    ids = np.frombuffer(key, np.int64)
    return np.concatenate([ids, np.arange(length - ids.size, dtype=np.int64)])


CONDITIONINGS_KEPT = 256  # voices x exaggerations whose conditioning embeddings the family keeps (~140 KB each)


class ChatterboxSlot(Slot):
    def __init__(self, job: ChatterboxJob, model: ChatterboxMetadata, policy: ChunkPolicy,
                 prompt_embeds: np.ndarray, prefix: np.ndarray, codec_inputs: CodecInputs):
        params = job.params
        self.prompt_embeds = prompt_embeds  # [rows, P, hidden]
        self.token_limit = job.token_limit
        rows, length = prompt_embeds.shape[:2]
        super().__init__(job, rows, length + job.token_limit, Chunker(policy, job.token_limit), params.return_codes,
                         prompt_length=length,
                         prefix=prefix)
        self.tokens_in = len(job.text_ids)
        self.voice = job.voice
        self.codes = np.zeros((1, job.token_limit), np.int64)
        self.frames = 0  # valid speech tokens (codes) so far
        self.generated = 0  # tokens sampled (speech positions fed after the prompt)
        self.last = model.start_speech
        self.seen = np.zeros(model.speech_vocab, bool)  # the repetition penalty's history: start-of-speech on
        self.seen[model.start_speech] = True
        self.rng = np.random.default_rng(params.seed)
        # the flow's and the vocoder's noise (ensemble/chatterbox/noise.py): the request's seed, or one of its own
        self.noise_seed = params.seed if params.seed is not None else int(self.rng.integers(2**62))
        self._codec_inputs = codec_inputs

    def codec_inputs(self, window: ChunkWindow) -> tuple[np.ndarray, ...]:
        return self._codec_inputs(self, window)


class ChatterboxFamily:
    name = "chatterbox"

    def __init__(self, lm: ChatterboxLanguageModel, conditioning: Conditioning, model: ChatterboxMetadata,
                 tables: EmbeddingTables, policy: ChunkPolicy, codec_inputs: CodecInputs):
        self.lm = lm
        self.conditioning = conditioning
        self.model = model
        self.tables = tables
        self.policy = policy
        self.codec_inputs = codec_inputs
        self.frame_samples = model.frame_samples
        self.kv_layout = (model.num_layers, model.num_kv_heads, model.head_dim)
        # conditioning embeddings by conditioning_key: admission runs on the decode thread, so a voice's repeat
        # requests skip the conditioning graph (the perceiver over its speech prompt)
        self._conditionings: OrderedDict[bytes, np.ndarray] = OrderedDict()

    def zeros(self, shape):
        return self.lm.zeros(shape)

    def idle(self) -> None:
        pass

    def _conditioning(self, key: bytes, voice: Voice, exaggeration: float) -> np.ndarray:
        if (cached := self._conditionings.get(key)) is not None:
            self._conditionings.move_to_end(key)
            return cached
        conditioning = self.conditioning(voice.speaker_emb[None], voice.prompt_speech_tokens[None],
                                         np.array([[exaggeration]], np.float32))[0]
        self._conditionings[key] = conditioning
        while len(self._conditionings) > CONDITIONINGS_KEPT:
            self._conditionings.popitem(last=False)
        return conditioning

    def prompt_embeds(self, job: ChatterboxJob) -> tuple[np.ndarray, np.ndarray]:
        """[rows, P, hidden]: conditioning, text, start-of-speech twice; the unconditioned row without the text;
        and the conditioning's prefix ids (the prefix cache's key for its inputs)."""
        params, voice, tables = job.params, job.voice, self.tables
        key = conditioning_key(voice, params.exaggeration)
        conditioning = self._conditioning(key, voice, params.exaggeration)
        positions = tables.text_positions[: len(job.text_ids)]
        start = tables.speech[self.model.start_speech] + tables.speech_positions[0]
        rows = [np.concatenate([conditioning, tables.text[job.text_ids] + positions, start[None], start[None]])]
        if params.cfg_weight > 0:
            rows.append(np.concatenate([conditioning, positions, start[None], start[None]]))
        return np.stack(rows).astype(np.float32), conditioning_prefix(key, len(conditioning))

    def admit(self, job: ChatterboxJob) -> ChatterboxSlot:
        return ChatterboxSlot(job, self.model, self.policy, *self.prompt_embeds(job), self.codec_inputs)

    def forward(self, plan: StepPlan):
        """Each request's rows feed prompt embeddings [start, end) while it prefills, else its last token's."""
        hidden = self.model.hidden_size
        inputs = np.zeros((plan.batch_rows, plan.width, hidden), np.float32)
        positions = np.empty(plan.batch_rows, np.int64)
        logit_index = np.empty(plan.batch_rows, np.int64)
        for feed in plan.feeds:
            slot = feed.slot
            if feed.prefill:
                inputs[feed.rows, : feed.count] = slot.prompt_embeds[:, feed.start : feed.end]
            else:
                inputs[feed.rows, 0] = self.tables.speech[slot.last] + self.tables.speech_positions[slot.generated]
            positions[feed.rows] = feed.start
            logit_index[feed.rows] = feed.count - 1
        return self.lm.step(inputs, positions, logit_index, plan.past_keys, plan.past_values)

    def consume(self, slot: ChatterboxSlot, logits: np.ndarray) -> None:
        """logits: [rows, V], the rows' last fed token's: with guidance, cond + w * (cond - uncond)."""
        params, model = slot.job.params, self.model
        scores = logits[0]
        if slot.rows == 2:
            scores = scores + params.cfg_weight * (scores - logits[1])
        scores = repetition_penalty(scores, slot.seen, params.repetition_penalty)
        token = int(sample(scores[None], params.temperature, params.top_k, params.top_p, slot.rng, params.min_p)[0])
        slot.tokens_out += 1
        if token == model.stop_speech:
            slot.finished = True
        else:
            slot.generated += 1
            slot.seen[token] = True
            slot.last = token
            if token < model.speech_codes:
                slot.codes[0, slot.frames] = token
                slot.frames += 1
            if slot.generated == slot.token_limit:
                slot.finished = True
        if slot.finished:
            slot.chunker.finish(slot.frames)
        while (window := slot.chunker.next_chunk(slot.frames)) is not None:
            slot.ready.append((window, slot.codes[:, window.window_start : window.window_end].copy()))
