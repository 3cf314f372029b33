"""Streaming gRPC clients for the decoupled Triton pipelines: `musicgen` (music) and `orpheus` (speech)."""

from .errors import ClientError, GenerationError, ServerUnavailableError, StreamContractError
from .request import MusicRequest, build_inputs
from .response import AudioChunk, ChunkSequence, parse_result
from .save import save_music, save_music_sync, save_speech, save_speech_sync
from .sentences import split_sentences
from .speech import SpeechRequest, speech_inputs, stream_speech
from .stats import StreamStats
from .stream import stream_chunks, stream_music
from .wav import WavWriter

__all__ = [
    "AudioChunk",
    "ChunkSequence",
    "ClientError",
    "GenerationError",
    "MusicRequest",
    "ServerUnavailableError",
    "StreamContractError",
    "SpeechRequest",
    "StreamStats",
    "WavWriter",
    "build_inputs",
    "parse_result",
    "save_music",
    "save_music_sync",
    "save_speech",
    "save_speech_sync",
    "speech_inputs",
    "split_sentences",
    "stream_chunks",
    "stream_music",
    "stream_speech",
]
