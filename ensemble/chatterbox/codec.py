"""Chatterbox's speech tokens to audio, a window at a time: the flow (tokens + the voice -> mel) then HiFT (mel -> audio).

The engine hands the codec a window of a stream's tokens (a chunk, its left context and lookahead:
ensemble/engine/chunker.py) with the slot's `codec_inputs`: the voice's flow prompt (tokens, mel,
x-vector) and the stream's identity and noise seed. `ChatterboxCodec` then adds what makes windows
of one stream join like a one-shot decode:

- the noise (ensemble/chatterbox/noise.py): the flow's starting noise and the vocoder source's noise
  are functions of the absolute mel frame and the seed, so a window draws what the one-shot decode
  draws at those frames;
- the vocoder's source phase: HiFT's sine source integrates f0 from the stream's start, so each
  window starts from the phase the previous window of the stream reached at its first frame
  (FRAME_PHASE), kept here per stream until its final window; the first starts from the seed's;
- the reference's fade-in of the first 40 ms (its trim_fade: 20 ms of silence, 20 ms raised cosine).

Windows of several streams go out as one padded batch (the flow and the vocoder take per-row lengths);
two windows of one stream in the same call are decoded in turn (the second needs the first's phase).
`decode` is the flow then the vocoder: the `chatterbox_codec` ensemble through BLS when served, two
ONNX Runtime sessions in tests.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from tritone.ensemble import tensors as T
from tritone.ensemble.chatterbox import noise
from tritone.ensemble.chatterbox.voice import FIELDS, voice_graph_inputs
from tritone.ensemble.engine.chunker import ChunkPolicy, ChunkWindow
from tritone.ensemble.engine.onnx_runtime import open_session

MEL_PER_TOKEN = 2
FADE_SAMPLES = 960  # the reference's trim_fade: 480 samples of silence, then 480 of a raised cosine
# Streaming (export/chatterbox/reach.py measures it; the figures are in ensemble/chatterbox/graphs_flow.py's
# docstring, "Streaming reach"): a chunk of tokens [s, e) is decoded by the flow with the tokens
# [s - FLOW_LEFT_CONTEXT_TOKENS, e + FLOW_LOOKAHEAD_TOKENS) (clipped to the stream) and the voice's whole prompt,
# then by the vocoder on that window's whole mel; frames [2 s, 2 e) are kept. HiFT is convolutional and reaches
# 16 mel frames back and 12 ahead; the flow's attention is global, so no context makes windows exact: at this one
# the streamed waveform stays within STREAMED_AUDIO_BOUND of the one-shot decode (random weights).
FLOW_LEFT_CONTEXT_TOKENS = 8
FLOW_LOOKAHEAD_TOKENS = 6
VOCODER_LEFT_CONTEXT_FRAMES = 16  # = 2 x FLOW_LEFT_CONTEXT_TOKENS: the vocoder's own reach, in mel frames
VOCODER_LOOKAHEAD_FRAMES = 12  # = 2 x FLOW_LOOKAHEAD_TOKENS
STREAMED_AUDIO_BOUND = 1e-2  # max |streamed - one-shot| waveform at that context (tiny: measured 3.2e-3, peak 0.1)
# Chunks start at 10 tokens (0.4 s) and double up to 50 (2 s): a flow call costs about the same whatever its
# window (its voice prompt and its 10 guided Euler steps dominate), so larger chunks cost less per second of audio.
CHATTERBOX_POLICY = ChunkPolicy(first_frames=10, growth=2.0, max_chunk_frames=50, left_context=FLOW_LEFT_CONTEXT_TOKENS,
                                lookahead=FLOW_LOOKAHEAD_TOKENS, min_window=4)
FLOW_INPUTS = (T.SPEECH_TOKENS, T.SPEECH_TOKEN_LENGTHS, T.PROMPT_TOKENS, T.PROMPT_TOKEN_LENGTHS, T.PROMPT_MEL,
               T.XVECTOR, T.PROMPT_NOISE, T.FLOW_NOISE)
VOCODER_INPUTS = (T.MEL, T.MEL_LENGTHS, T.SOURCE_PHASE, T.SOURCE_NOISE)
CODEC_INPUTS = FLOW_INPUTS + (T.MEL_LENGTHS, T.SOURCE_PHASE, T.SOURCE_NOISE)  # the chatterbox_codec ensemble's
CODEC_OUTPUTS = (T.AUDIO, T.FRAME_PHASE)

Decode = Callable[[dict[str, np.ndarray]], tuple[np.ndarray, np.ndarray]]  # CODEC_INPUTS -> (audio, frame phase)


def fade_in() -> np.ndarray:
    fade = np.zeros(FADE_SAMPLES, np.float32)
    half = FADE_SAMPLES // 2
    fade[half:] = (np.cos(np.linspace(np.pi, 0, half)) + 1) / 2
    return fade


class CodecInputs:
    """The slot's codec_inputs: (prompt tokens [Tp], prompt mel [2 Tp, 80], x-vector [192], window [4]: the
    stream's serial, its noise seed, the window's first token, 1 if it is the stream's final window)."""

    def __call__(self, slot, window: ChunkWindow) -> tuple[np.ndarray, ...]:
        voice = slot.voice
        return (voice.prompt_tokens, voice.prompt_mel, voice.xvector,
                np.array([slot.serial, slot.noise_seed, window.window_start, window.final], np.int64))


def _pad(arrays: list[np.ndarray], axis: int) -> np.ndarray:
    """Stack along a new first axis, each padded with zeros on the right of `axis` to the longest."""
    longest = max(a.shape[axis] for a in arrays)
    padded = []
    for a in arrays:
        widths = [(0, 0)] * a.ndim
        widths[axis] = (0, longest - a.shape[axis])
        padded.append(np.pad(a, widths))
    return np.stack(padded)


@dataclass
class _Stream:
    """What a stream's windows share: its prompt's starting noise (the same for every window), and the vocoder
    phase its latest window reached at each of its frames (its first mel frame, [9, frames + 1])."""

    prompt_noise: np.ndarray
    phase_start: int = 0
    phases: np.ndarray | None = None

    def phase_at(self, frame: int) -> np.ndarray | None:
        """Each harmonic's phase before mel frame `frame`, where the latest window reached it."""
        if self.phases is None or not self.phase_start <= frame < self.phase_start + self.phases.shape[1]:
            return None
        return self.phases[:, frame - self.phase_start]


class ChatterboxCodec:
    """The engine's decode_codes for Chatterbox: [(tokens [1, W], *CodecInputs), ...] -> [audio [960 W], ...]."""

    def __init__(self, decode: Decode, max_batch: int = 8, streams_kept: int = 1024):
        self._decode = decode
        self._max_batch = max_batch  # windows per call (the codec models' max_batch_size)
        self._streams: OrderedDict[int, _Stream] = OrderedDict()
        self._kept = streams_kept  # streams cancelled mid-way never send their final window: the oldest go
        self._lock = threading.Lock()
        self._fade = fade_in()

    def each(self, items: list[tuple[np.ndarray, ...]]) -> list[np.ndarray]:
        audio: list[np.ndarray | None] = [None] * len(items)
        pending = list(range(len(items)))
        with self._lock:
            while pending:  # a round takes each stream's earliest window still to decode
                round_, later, seen = [], [], set()
                for i in pending:
                    stream = int(items[i][4][0])
                    (later if stream in seen else round_).append(i)
                    seen.add(stream)
                for start in range(0, len(round_), self._max_batch):
                    batch = round_[start : start + self._max_batch]
                    for i, samples in zip(batch, self._round([items[i] for i in batch])):
                        audio[i] = samples
                pending = later
        return audio

    def _stream(self, stream_id: int, seed: int, first_frame: int, prompt_frames: int) -> _Stream:
        """The stream's state; a stream's first window starts it, any later one finds it."""
        if first_frame == 0:
            self._streams[stream_id] = _Stream(noise.prompt_noise(seed, prompt_frames))
            while len(self._streams) > self._kept:
                self._streams.popitem(last=False)
        state = self._streams.get(stream_id)
        if state is None or (first_frame > 0 and state.phase_at(first_frame) is None):
            raise RuntimeError(f"stream {stream_id}: no vocoder phase for mel frame {first_frame} (its previous window "
                               "was not decoded before this one)")
        self._streams.move_to_end(stream_id)
        return state

    def _round(self, items) -> list[np.ndarray]:
        states, firsts = [], []
        for tokens, prompt_tokens, _, _, window in items:
            first = MEL_PER_TOKEN * int(window[2])
            states.append(self._stream(int(window[0]), int(window[1]), first, MEL_PER_TOKEN * len(prompt_tokens)))
            firsts.append(first)
        seeds = [int(window[1]) for *_, window in items]
        frames = [MEL_PER_TOKEN * tokens.shape[1] for tokens, *_ in items]
        batch = {
            T.SPEECH_TOKENS: _pad([tokens[0] for tokens, *_ in items], 0),
            T.SPEECH_TOKEN_LENGTHS: np.array([tokens.shape[1] for tokens, *_ in items], np.int64),
            T.PROMPT_TOKENS: _pad([item[1] for item in items], 0),
            T.PROMPT_TOKEN_LENGTHS: np.array([len(item[1]) for item in items], np.int64),
            T.PROMPT_MEL: _pad([item[2] for item in items], 0),
            T.XVECTOR: np.stack([item[3] for item in items]),
            T.PROMPT_NOISE: _pad([state.prompt_noise for state in states], 1),
            T.FLOW_NOISE: _pad([noise.flow_noise(*args) for args in zip(seeds, firsts, frames)], 1),
            T.MEL_LENGTHS: np.array(frames, np.int64),
            T.SOURCE_PHASE: np.stack([noise.source_phase(seed) if first == 0 else state.phase_at(first)
                                      for seed, first, state in zip(seeds, firsts, states)]),
            T.SOURCE_NOISE: _pad([noise.source_noise(*args) for args in zip(seeds, firsts, frames)], 0),
        }
        audio, frame_phase = self._decode(batch)
        out = []
        for row, (state, first, count, (*_, window)) in enumerate(zip(states, firsts, frames, items)):
            if bool(window[3]):  # its final window
                self._streams.pop(int(window[0]), None)
            else:
                state.phase_start, state.phases = first, frame_phase[row, :, : count + 1]
            samples = audio[row, : count * noise.FRAME_SAMPLES].astype(np.float32)
            if first == 0:
                fade = min(FADE_SAMPLES, samples.size)
                samples[:fade] *= self._fade[:fade]
            out.append(samples)
        return out


class OnnxCodec:
    """The flow and the vocoder on ONNX Runtime, one after the other (what the chatterbox_codec ensemble runs)."""

    def __init__(self, repository: Path, threads: int | None = None):
        self._flow = open_session(Path(repository) / T.CHATTERBOX_FLOW / "1" / T.ONNX_FILE, threads)
        self._vocoder = open_session(Path(repository) / T.CHATTERBOX_VOCODER / "1" / T.ONNX_FILE, threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        mel = self._flow.run([T.MEL], {name: batch[name] for name in FLOW_INPUTS})[0]
        audio, frame_phase = self._vocoder.run(list(CODEC_OUTPUTS), {T.MEL: mel, **{
            name: batch[name] for name in VOCODER_INPUTS if name != T.MEL}})
        return audio, frame_phase


class OnnxVoiceModel:
    """chatterbox_voice's graph on ONNX Runtime: a clip [S] at 24 kHz -> the voice's arrays by name."""

    def __init__(self, path: Path, threads: int | None = None):
        self._session = open_session(path, threads)

    def __call__(self, clip: np.ndarray) -> dict[str, np.ndarray]:
        values = self._session.run(list(FIELDS), voice_graph_inputs(clip))
        return {name: value[0] for name, value in zip(FIELDS, values)}
