"""Command line: `python -m client musicgen "prompt" --duration 8 --out song.wav`."""

from __future__ import annotations

import argparse
import sys

from .errors import ClientError
from .request import MusicRequest
from .response import AudioChunk
from .save import save_music_sync
from .stats import StreamStats

DEFAULT_URL = "localhost:8001"


def _add_musicgen(subparsers) -> None:
    parser = subparsers.add_parser("musicgen", help="generate music from a text prompt")
    parser.add_argument("text", help="the prompt, e.g. 'lo-fi piano with rain'")
    parser.add_argument("--duration", type=float, required=True, help="seconds of audio")
    parser.add_argument("--out", required=True, help="WAV file to write (32-bit float)")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"Triton gRPC endpoint (default {DEFAULT_URL})")
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--top-k", type=int)
    parser.add_argument("--top-p", type=float)
    parser.add_argument("--guidance-scale", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--codes-out", help="also save the generated codes [codebooks, frames] as .npy")
    parser.add_argument("--timeout", type=float, help="deadline in seconds for the whole stream")
    parser.set_defaults(run=_run_musicgen)


def _progress(chunk: AudioChunk, stats: StreamStats) -> None:
    print(
        f"chunk {chunk.index}: {chunk.seconds:.2f} s of audio, {stats.audio_seconds:.2f} s total",
        file=sys.stderr,
    )


def _run_musicgen(args: argparse.Namespace) -> None:
    request = MusicRequest(
        text=args.text,
        duration=args.duration,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        guidance_scale=args.guidance_scale,
        seed=args.seed,
        return_codes=args.codes_out is not None,
    )
    stats = save_music_sync(
        args.url, request, args.out, codes_path=args.codes_out, on_chunk=_progress, timeout=args.timeout
    )
    print(f"time to first audio: {stats.time_to_first_audio:.3f} s", file=sys.stderr)
    print(
        f"real-time factor:    {stats.real_time_factor:.3f} ({stats.x_real_time:.2f}x real time)",
        file=sys.stderr,
    )
    print(f"audio:               {stats.audio_seconds:.2f} s at {stats.sample_rate} Hz", file=sys.stderr)
    print(f"wrote {args.out}" + (f" and {args.codes_out}" if args.codes_out else ""), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m client", description="Triton streaming client")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_musicgen(subparsers)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
