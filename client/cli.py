"""Command line: `python -m tritone.client musicgen "prompt" --duration 8 --out song.wav`,
`python -m tritone.client speech "Hello there." --voice tara --out hello.wav`."""

from __future__ import annotations

import argparse
import sys

from tritone.ensemble import tensors as T

from .clip import decode_clip
from .errors import ClientError
from .request import MusicRequest
from .response import AudioChunk
from .save import save_music_sync, save_speech_sync
from .sentences import MAX_SENTENCE_CHARS
from .speech import SAMPLE_RATE, SpeechRequest
from .stats import StreamStats

DEFAULT_URL = "localhost:8001"


class UsageError(Exception):
    """Bad command-line input found after parsing (a reference clip that cannot be read)."""


def _add_common(parser, sampling: tuple[str, ...]) -> None:
    parser.add_argument("--out", required=True, help="WAV file to write (32-bit float), written as chunks arrive")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"Triton gRPC endpoint (default {DEFAULT_URL})")
    for option, kind in (("--temperature", float), ("--top-k", int), ("--top-p", float), *sampling):
        parser.add_argument(option, type=kind)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--codes-out", help="also save the generated codes [codebooks, frames] as .npy")
    parser.add_argument("--timeout", type=float, help="deadline in seconds for a stream")


def _add_musicgen(subparsers) -> None:
    parser = subparsers.add_parser("musicgen", help="generate music from a text prompt")
    parser.add_argument("text", help="the prompt, e.g. 'lo-fi piano with rain'")
    parser.add_argument("--duration", type=float, required=True, help="seconds of audio")
    _add_common(parser, (("--guidance-scale", float),))
    parser.set_defaults(run=_run_musicgen)


def _add_speech(subparsers) -> None:
    parser = subparsers.add_parser("speech", help="speak a text (orpheus or chatterbox), sentence by sentence")
    parser.add_argument("text", help="what to say; long text is spoken sentence by sentence without gaps")
    parser.add_argument("--model", default=T.ORPHEUS, choices=(T.ORPHEUS, T.CHATTERBOX),
                        help=f"the speech pipeline (default {T.ORPHEUS})")
    parser.add_argument("--voice", help="a built-in voice: orpheus' speakers (tara, leah, jess, leo, dan, mia, zac, "
                                        "zoe), chatterbox's 'default'")
    parser.add_argument("--reference", metavar="CLIP", help="clone the voice of this clip (wav, flac, mp3, ogg; "
                                                            "sent as 24 kHz mono); orpheus needs --reference-text")
    parser.add_argument("--reference-text", help="the transcript of --reference (orpheus)")
    parser.add_argument("--exaggeration", type=float, help="chatterbox: emotion exaggeration (default 0.5)")
    parser.add_argument("--cfg-weight", type=float, help="chatterbox: guidance weight, 0 disables it (default 0.5)")
    parser.add_argument("--min-p", type=float, help="chatterbox: min-p sampling (default 0.05)")
    parser.add_argument("--max-duration", type=float, help="seconds of speech at most, per sentence")
    parser.add_argument("--max-sentence-chars", type=int, default=MAX_SENTENCE_CHARS,
                        help=f"split longer sentences at word boundaries (default {MAX_SENTENCE_CHARS}); "
                             "0 sends the text as one request")
    _add_common(parser, (("--repetition-penalty", float),))
    parser.set_defaults(run=_run_speech)


def _progress(chunk: AudioChunk, stats: StreamStats) -> None:
    print(
        f"chunk {chunk.index}: {chunk.seconds:.2f} s of audio, {stats.audio_seconds:.2f} s total",
        file=sys.stderr,
    )


def _report(stats: StreamStats, args: argparse.Namespace) -> None:
    if stats.time_to_first_audio is not None:
        print(f"time to first audio: {stats.time_to_first_audio:.3f} s", file=sys.stderr)
    if stats.real_time_factor is not None:
        print(f"real-time factor:    {stats.real_time_factor:.3f} ({stats.x_real_time:.2f}x real time)",
              file=sys.stderr)
    print(f"audio:               {stats.audio_seconds:.2f} s at {stats.sample_rate} Hz", file=sys.stderr)
    print(f"wrote {args.out}" + (f" and {args.codes_out}" if args.codes_out else ""), file=sys.stderr)


def _sampling(args: argparse.Namespace) -> dict:
    return {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p, "seed": args.seed,
            "return_codes": args.codes_out is not None}


def _save(save, args: argparse.Namespace, request, **options) -> None:
    stats = save(args.url, request, args.out, codes_path=args.codes_out, on_chunk=_progress, timeout=args.timeout,
                 **options)
    _report(stats, args)


def _run_musicgen(args: argparse.Namespace) -> None:
    request = MusicRequest(text=args.text, duration=args.duration, guidance_scale=args.guidance_scale,
                           **_sampling(args))
    _save(save_music_sync, args, request)


def _run_speech(args: argparse.Namespace) -> None:
    if args.model == T.ORPHEUS and (args.reference is None) != (args.reference_text is None):
        raise UsageError("--reference and --reference-text go together (orpheus)")
    if args.model != T.CHATTERBOX and any(v is not None for v in (args.exaggeration, args.cfg_weight, args.min_p)):
        raise UsageError("--exaggeration, --cfg-weight and --min-p are chatterbox's (--model chatterbox)")
    reference = None
    if args.reference is not None:
        try:
            reference = decode_clip(args.reference, SAMPLE_RATE)
        except (OSError, ValueError) as error:
            raise UsageError(f"--reference {args.reference}: {error}") from None
    request = SpeechRequest(text=args.text, voice=args.voice, reference_text=args.reference_text,
                            reference_audio=reference, max_duration=args.max_duration,
                            repetition_penalty=args.repetition_penalty, exaggeration=args.exaggeration,
                            cfg_weight=args.cfg_weight, min_p=args.min_p, **_sampling(args))
    _save(save_speech_sync, args, request, max_chars=args.max_sentence_chars or None, model=args.model)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tritone.client", description="Triton streaming client")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_musicgen(subparsers)
    _add_speech(subparsers)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (ClientError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
