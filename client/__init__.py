"""Streaming gRPC client for the decoupled `musicgen` Triton model."""

from .errors import ClientError, GenerationError, ServerUnavailableError, StreamContractError
from .request import MusicRequest, build_inputs
from .response import AudioChunk, ChunkSequence, parse_result
from .save import save_music, save_music_sync
from .stats import StreamStats
from .stream import stream_music
from .wav import WavWriter

__all__ = [
    "AudioChunk",
    "ChunkSequence",
    "ClientError",
    "GenerationError",
    "MusicRequest",
    "ServerUnavailableError",
    "StreamContractError",
    "StreamStats",
    "WavWriter",
    "build_inputs",
    "parse_result",
    "save_music",
    "save_music_sync",
    "stream_music",
]
