"""llama.cpp beside tritone, for speech on CPU: what people run Orpheus-format models on without a
big GPU, serving the very weights tritone serves, driven with the same prompts, in the same run.

- the binary: `llama-server` built here from the llama.cpp source the llama-cpp-python sdist
  vendors (llamacpp_build.py; cached under .cache/llamacpp/);
- the weights: the export's LM checkpoint (orpheus/1/checkpoint) written to GGUF by llama.cpp's
  own converter (convert_hf_to_gguf.py with its gguf-py), `gguf_type` f32, bf16 or f16; `auto`
  follows the LM dtype tritone's CPU target picks on this machine (`dtype: auto`: bfloat16 where
  the CPU has AVX512-BF16 or AMX, else float32). The random checkpoints' toy tokenizer is a
  byte-level BPE the converter does not know: it is written as a plain BPE vocabulary with the
  `default` pre-tokenizer, which is never used (prompts go in as token ids);
- the server: `--parallel P` slots (P: the largest level), continuous batching (`-cb`), a context
  of P x (longest prompt + max tokens), `threads` for decode and batch, end_of_speech made the
  model's end-of-generation token (`--override-kv tokenizer.ggml.eos_token_id`), as Orpheus means it;
- the requests: POST /completion with the prompt as token ids (the Orpheus layout of
  ensemble/orpheus/format.py, built as tritone's pipeline builds it, cloned voice included),
  `stream`, `return_tokens`, `n_predict` = 7 x tritone's frame limit for max_duration, greedy
  (samplers `penalties` then `top_k` 1) with tritone's repetition penalty over a window
  (`repeat_last_n`) that covers the whole prompt and answer, as tritone and transformers apply it,
  and `cache_prompt` (llama.cpp's default: a slot reuses the KV of the longest matching prompt
  prefix it holds, as tritone's prefix cache reuses a cloned voice's turn);
- without the Orpheus grammar: llama.cpp's GBNF names single token ids (`<[id]>`) but no ranges,
  so each frame position would be 4096 alternatives checked against the whole vocabulary every
  step. Grammar-free, the model may say any token; on random weights most tokens are not the
  audio code of their frame position. Each generated token is taken as its position's code
  (`grammar_free_codes`: folded into that position's 4096 codes) so the codec decodes exactly as
  much audio as the tokens paid for; `grammar_valid` says how many were valid codes. What is
  measured is the cost, not the speech;
- the audio: SNAC (the export's codec, in torch, as the transformers baseline decodes) in this
  process while the streams run. A stream's first chunk is tritone's at that level (its frames plus
  `lookahead` frames of codes, as the CPU target's config cuts it: `served_policy`), decoded as soon
  as its tokens have arrived:
  time to first audio = send -> those tokens + that decode (both measured, the decode competing
  for the cores with the server as a client's would). The rest is decoded in one window (with
  `left_context` frames before it) when the stream ends; the level's wall time runs from the
  first send to the last decode's end.

Per level (N closed-loop clients over the same requests as tritone's): tokens/s, time to first
token and to first audio (p50/p95), first-chunk decode time, audio s per wall s, prompt tokens
reused from the cache, and llama.cpp's own per-stream decode rate (`timings`).

Every failure before the measurement (build, conversion, server start) becomes
{"status": "failed", "step": ..., "reason": ...} in the results, not a crash of the run.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tritone.benchmarks.load import level_counts, percentiles
from tritone.benchmarks.orpheus.llamacpp_build import Build, BuildFailed, build
from tritone.ensemble.engine.chunker import ChunkPolicy, Chunker
from tritone.ensemble.orpheus.format import TOKENS_PER_FRAME, OrpheusFormat

GGUF_TYPES = ("auto", "f32", "bf16", "f16")
SAMPLERS = ("penalties", "top_k")  # the penalty first, then the argmax: tritone's order
SYSTEM = ("llama.cpp llama-server (continuous batching, --parallel slots, prompt cache), grammar-free greedy, "
          "+ SNAC decode in the client")


# --- the weights -----------------------------------------------------------------------------


def resolve_gguf_type(choice: str) -> str:
    """`auto`: the dtype tritone's CPU target runs its LM in here (bf16 or f32); else `choice`."""
    if choice not in GGUF_TYPES:
        raise ValueError(f"llamacpp_gguf_type: expected one of {', '.join(GGUF_TYPES)}, got {choice!r}")
    if choice != "auto":
        return choice
    from tritone.ensemble.engine.lm_choice import resolve_lm

    return "bf16" if resolve_lm("auto", "cpu", "auto").dtype == "bfloat16" else "f32"


# The converter, run as llama.cpp ships it but for the random checkpoints' tokenizer: a byte-level
# BPE that is neither Llama 3's nor any it knows (see the module docstring).
_CONVERT = """
import sys
sys.path.insert(0, sys.argv[1])
from conversion.base import TextModel
from conversion.llama import LlamaModel
TextModel.get_vocab_base_pre = lambda self, tokenizer: "default"
LlamaModel.set_vocab = lambda self: self._set_vocab_gpt2()
sys.argv = ["convert_hf_to_gguf.py", *sys.argv[2:]]
import convert_hf_to_gguf
convert_hf_to_gguf.main()
"""


def write_gguf(b: Build, checkpoint: Path, out_dir: Path, gguf_type: str, log=print) -> Path:
    """The checkpoint as GGUF of `gguf_type` in out_dir (kept while newer than the checkpoint);
    raises BuildFailed("convert", ...)."""
    checkpoint = Path(checkpoint)
    weights = sorted(checkpoint.glob("*.safetensors"))
    if not (checkpoint / "config.json").is_file() or not weights:
        raise BuildFailed("convert", f"no transformers checkpoint (config.json, *.safetensors) in {checkpoint}")
    out = Path(out_dir) / f"orpheus-{gguf_type}.gguf"
    if out.is_file() and out.stat().st_mtime >= max(p.stat().st_mtime for p in weights):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    log(f"  writing {out.name} with llama.cpp's convert_hf_to_gguf.py ...")
    partial = out.with_suffix(".partial")
    done = subprocess.run([sys.executable, "-c", _CONVERT, str(b.source), str(checkpoint), "--outtype", gguf_type,
                           "--outfile", str(partial)], capture_output=True, text=True, timeout=1800)
    if done.returncode != 0 or not partial.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-8:]
        raise BuildFailed("convert", f"exit status {done.returncode}: " + " | ".join(tail))
    partial.replace(out)
    return out


# --- the server ------------------------------------------------------------------------------


def server_args(b: Build, gguf: Path, port: int, *, threads: int, parallel: int, ctx_per_slot: int,
                end_of_speech: int) -> list[str]:
    return [str(b.binary), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port),
            "-t", str(threads), "-tb", str(threads), "--parallel", str(parallel), "-cb",
            "-c", str(parallel * ctx_per_slot), "--override-kv", f"tokenizer.ggml.eos_token_id=int:{end_of_speech}",
            "--no-webui"]


@contextmanager
def llama_server(args: list[str], log_file: Path, timeout: float = 300.0):
    """llama-server started with `args`, ready (GET /health is 200) or BuildFailed("start", ...)."""
    import httpx

    port = args[args.index("--port") + 1]
    url = f"http://127.0.0.1:{port}"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "wb") as sink:
        process = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                tail = log_file.read_text(errors="replace").strip().splitlines()[-5:]
                raise BuildFailed("start", f"llama-server exited with {process.returncode}: " + " | ".join(tail))
            try:
                if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise BuildFailed("start", f"llama-server not ready in {timeout:.0f} s (log {log_file})")
            time.sleep(0.25)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def completion_body(prompt: list[int], n_predict: int, repetition_penalty: float, penalty_window: int) -> dict:
    return {"prompt": [int(t) for t in prompt], "n_predict": int(n_predict), "stream": True, "return_tokens": True,
            "samplers": list(SAMPLERS), "top_k": 1, "repeat_penalty": float(repetition_penalty),
            "repeat_last_n": int(penalty_window), "cache_prompt": True}


# --- one stream ------------------------------------------------------------------------------


def parse_event(line: str) -> dict | None:
    """One line of llama-server's event stream -> its JSON, or None (blank lines, comments)."""
    line = line.strip()
    if not line.startswith("data:"):
        return None
    payload = line[len("data:"):].strip()
    if not payload or payload == "[DONE]":
        return None
    event = json.loads(payload)
    if "error" in event:
        error = event["error"]
        raise RuntimeError(f"llama-server: {error.get('message', error) if isinstance(error, dict) else error}")
    return event


@dataclass
class CompletionRecord:
    """One stream: when it was sent, the tokens as they came, and what the server said at the end."""

    index: int
    sent: float
    end_token: int | None = None  # end_of_speech: what a stream stopped by an end-of-generation token ends with
    tokens: list[int] = field(default_factory=list)
    first_token: float | None = None  # perf_counter of the first generated token's event
    token_times: list[float] = field(default_factory=list)
    predicted: int = 0  # the server's count of generated tokens (tokens_predicted)
    missing: int = 0  # generated tokens no event carried (held back in an incomplete UTF-8 piece)
    stop_type: str | None = None  # "eos" (end_of_speech), "limit" (n_predict), ...
    timings: dict = field(default_factory=dict)
    first_audio: float | None = None  # perf_counter when the first chunk's audio was decoded
    first_decode_s: float | None = None
    frames: int = 0
    grammar_valid: int = 0
    finished: float | None = None
    error: str | None = None

    def feed(self, event: dict, now: float) -> None:
        """Apply one event. A token whose text ends in an incomplete UTF-8 character is never
        streamed (llama-server holds its text back, and the next event carries only its own
        token; the last event carries none): `tokens_predicted` counts it, and it stands as -1
        (missing) in its place, so that the frames stay aligned. A stream stopped by an
        end-of-generation token ends with `end_token`, whether that token came or not."""
        predicted = int(event.get("tokens_predicted", self.predicted))
        tokens = [int(t) for t in event.get("tokens") or []]
        stop = bool(event.get("stop"))
        gap = predicted - len(self.tokens) - len(tokens) if tokens or stop else 0
        if gap > 0:
            self.missing += gap
            self.tokens += [-1] * gap
            self.token_times += [now] * gap
        if tokens:
            if self.first_token is None:
                self.first_token = now
            self.tokens += tokens
            self.token_times += [now] * len(tokens)
        self.predicted = max(self.predicted, predicted)
        if stop:
            self.stop_type = event.get("stop_type")
            self.timings = event.get("timings") or {}
            if self.stop_type == "eos" and self.tokens and self.end_token is not None \
                    and self.tokens[-1] != self.end_token:
                self.missing -= self.tokens[-1] == -1
                self.tokens[-1] = self.end_token

    @property
    def time_to_first_token(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.sent

    @property
    def time_to_first_audio(self) -> float | None:
        return None if self.first_audio is None else self.first_audio - self.sent


def grammar_free_codes(fmt: OrpheusFormat, tokens: list[int]) -> tuple[np.ndarray, int]:
    """The answer's whole frames before end_of_speech -> (codes [7, frames], how many of their
    tokens were the audio code of their frame position). A token that is not (a text token, an
    audio token of another position, a missing one: -1) is folded into its position's codes
    (token - position's first code, modulo the codebook), the codec's cost being the same."""
    answer = np.asarray(tokens, np.int64)
    ends = np.flatnonzero(answer == fmt.end_of_speech)
    answer = answer[: ends[0]] if ends.size else answer
    frames = answer.size // TOKENS_PER_FRAME
    answer = answer[: frames * TOKENS_PER_FRAME].reshape(frames, TOKENS_PER_FRAME).T  # [7, frames]
    first = fmt.audio_start + np.arange(TOKENS_PER_FRAME, dtype=np.int64)[:, None] * fmt.codebook_size
    codes = answer - first
    valid = int(((codes >= 0) & (codes < fmt.codebook_size) & (answer >= 0)).sum())
    return np.mod(codes, fmt.codebook_size), valid


def first_window(policy: ChunkPolicy, frame_limit: int, streams: int = 1) -> int:
    """Frames of codes tritone's first chunk needs (its frames and their lookahead) with `streams` decoding."""
    chunker = Chunker(policy, frame_limit)
    chunker.streams = streams
    window = chunker.next_chunk(frame_limit)
    return window.window_end if window is not None else 0


def served_policy() -> ChunkPolicy:
    """The chunk policy tritone's CPU target serves Orpheus with (its config's parameters)."""
    from tritone.ensemble.families import FAMILIES
    from tritone.ensemble.orpheus.pipeline import OrpheusSettings

    return OrpheusSettings.from_parameters(FAMILIES["orpheus"].models()[-1].targets["cpu"].parameters).policy


@dataclass
class Speaker:
    """What the client needs besides the server: the format, the codec and its decode, the policy."""

    fmt: OrpheusFormat
    decode: Callable[[np.ndarray], np.ndarray]  # codes [7, frames] -> audio [samples]
    policy: ChunkPolicy
    frame_seconds: float


async def stream_completion(client, url: str, index: int, body: dict, frame_limit: int, speaker: Speaker,
                            timeout: float, streams: int = 1) -> CompletionRecord:
    """Stream one completion; decode its first chunk (tritone's with `streams` decoding) as soon as its frames
    are there (TTFA), and the rest when it ends."""
    fmt, policy = speaker.fmt, speaker.policy
    needed = first_window(policy, frame_limit, streams) * TOKENS_PER_FRAME
    record = CompletionRecord(index, time.perf_counter(), end_token=fmt.end_of_speech)
    first_task = None

    async def decode_first(tokens: list[int]):
        codes, _ = grammar_free_codes(fmt, tokens)
        t0 = time.perf_counter()
        await asyncio.to_thread(speaker.decode, codes)
        record.first_audio = time.perf_counter()
        record.first_decode_s = record.first_audio - t0

    try:
        async with client.stream("POST", f"{url}/completion", json=body, timeout=timeout) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")[:300]
                raise RuntimeError(f"llama-server answered {response.status_code}: {text}")
            async for line in response.aiter_lines():
                event = parse_event(line)
                if event is None:
                    continue
                record.feed(event, time.perf_counter())
                if first_task is None and needed and len(record.tokens) >= needed:
                    first_task = asyncio.create_task(decode_first(record.tokens[:needed]))
                if event.get("stop"):
                    break
        codes, record.grammar_valid = grammar_free_codes(fmt, record.tokens)
        record.frames = codes.shape[1]
        first_frames = needed // TOKENS_PER_FRAME
        if first_task is None or codes.shape[1] < first_frames:  # ended before its first chunk's frames
            if first_task is not None:
                await first_task
            first_task = asyncio.create_task(decode_first(record.tokens))
            first_frames = codes.shape[1]
        await first_task
        if codes.shape[1] > first_frames:  # the rest, with the codec's left context
            start = max(0, first_frames - policy.lookahead - policy.left_context)
            await asyncio.to_thread(speaker.decode, codes[:, start:])
        record.finished = time.perf_counter()
    except Exception as error:  # a broken stream is a result to report, not a crash of the run
        record.error = f"{type(error).__name__}: {error}"
        if first_task is not None and not first_task.done():
            first_task.cancel()
    return record


# --- one level -------------------------------------------------------------------------------


def summarize_level(concurrency: int, records: list[CompletionRecord], started: float, ended: float,
                    frame_seconds: float) -> dict:
    done = [r for r in records if r.error is None and r.first_audio is not None]
    wall = ended - started
    tokens = sum(r.predicted for r in done)
    audio = [r.frames * frame_seconds for r in done]
    answer_tokens = sum(r.frames * TOKENS_PER_FRAME for r in done)
    rates = [r.timings.get("predicted_per_second") for r in done if r.timings.get("predicted_per_second")]
    return {
        **level_counts(concurrency, records, done),
        "time_to_first_token_s": percentiles([r.time_to_first_token for r in done]),
        "time_to_first_audio_s": percentiles([r.time_to_first_audio for r in done]),
        "first_chunk_decode_s": percentiles([r.first_decode_s for r in done]),
        "tokens": tokens,
        "tokens_per_s": tokens / wall if wall > 0 else None,
        "audio_s": sum(audio),
        "audio_s_per_request": {"min": min(audio), "max": max(audio)} if done else None,
        "wall_s": wall,
        "audio_s_per_wall_s": sum(audio) / wall if wall > 0 else None,
        "stop_types": {kind: sum(1 for r in done if r.stop_type == kind) for kind in sorted({r.stop_type for r in done
                                                                                             if r.stop_type})},
        "grammar_valid": answer_tokens and sum(r.grammar_valid for r in done) / answer_tokens,
        "missing_tokens": sum(r.missing for r in done),
        "prompt_tokens": sum(int(r.timings.get("prompt_n", 0)) + int(r.timings.get("cache_n", 0)) for r in done),
        "prompt_tokens_cached": sum(int(r.timings.get("cache_n", 0)) for r in done),
        "server_tokens_per_s_per_stream": percentiles(rates),
        # ours are llama-server's threads and the client's decodes; more is other work, which llama.cpp's
        # spinning thread barriers suffer badly from (a step waits for a descheduled thread's time slice)
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


async def run_level(url: str, concurrency: int, requests: list[tuple[dict, int]], speaker: Speaker,
                    timeout: float = 1800.0) -> dict:
    """`concurrency` closed-loop clients over `requests` ((body, frame_limit), in order)."""
    import httpx

    pending = list(enumerate(requests))
    records: list[CompletionRecord] = []
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        async def worker():
            while pending:
                index, (body, frame_limit) = pending.pop(0)
                records.append(await stream_completion(client, url, index, body, frame_limit, speaker, timeout,
                                                       streams=concurrency))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    ended = max([r.finished or r.sent for r in records] + [started])
    records.sort(key=lambda r: r.index)
    return summarize_level(concurrency, records, started, ended, speaker.frame_seconds)


# --- the phase -------------------------------------------------------------------------------


def run_llamacpp(repository: Path, work_dir: Path, workloads: dict, levels: dict[str, list[int]], *, duration: float,
                 repetition_penalty: float, rounds: int, min_requests: int, threads: int, gguf_type: str = "auto",
                 cache: Path | None = None, jobs: int = 2, log=print) -> dict:
    """Every voice's levels against llama-server. `workloads`: mode -> make_requests(count,
    duration) (the suite's); `levels`: mode -> concurrency levels. Returns the results section
    ({"status": "ok", ...} or {"status": "failed", "step", "reason"})."""
    from tritone.benchmarks.orpheus.baseline import CODEC_DIR, _source, decode_audio, prompt_ids
    from tritone.ensemble import tensors as T
    from tritone.ensemble.orpheus.metadata import CHECKPOINT_DIR, TOKENIZER_DIR, OrpheusMetadata
    from tritone.serving.triton import free_port

    version = Path(repository) / T.ORPHEUS / "1"
    result: dict = {"system": SYSTEM, "status": "failed"}
    step = "build"
    try:
        b = build(**({"cache": cache} if cache else {}), jobs=jobs, log=log)
        result["build"] = b.info()
        step = "convert"
        gguf_type = resolve_gguf_type(gguf_type)
        gguf = write_gguf(b, version / CHECKPOINT_DIR, Path(work_dir) / "llamacpp", gguf_type, log)
        result["gguf"] = {"file": gguf.name, "type": gguf_type, "bytes": gguf.stat().st_size,
                          "converter": "convert_hf_to_gguf.py (llama.cpp's, with its gguf-py)"}
        step = "start"
        import torch
        from snac import SNAC
        from transformers import AutoTokenizer

        torch.set_num_threads(threads)
        meta = OrpheusMetadata.load(version)
        fmt = meta.format
        tokenizer = AutoTokenizer.from_pretrained(str(version / TOKENIZER_DIR))
        codec = SNAC.from_pretrained(_source(version, CODEC_DIR, meta.codec_checkpoint)).eval()
        policy = served_policy()
        speaker = Speaker(fmt, lambda codes: decode_audio(codec, [codes])[0], policy,
                          meta.frame_samples / meta.sample_rate)
        result["frame_s"] = speaker.frame_seconds

        def requests_of(mode: str, count: int, seconds: float) -> list[tuple[list[int], int]]:
            out = []
            for r in workloads[mode](count, seconds):
                prompt = prompt_ids(tokenizer, fmt, r.text, r.voice, r.reference_text, r.reference_codes)
                frame_limit = max(1, math.floor(r.max_duration * meta.frame_rate))  # OrpheusParams.frame_limit
                out.append((prompt, frame_limit))
            return out

        parallel = max(n for mode_levels in levels.values() for n in mode_levels)
        counts = {mode: max(max(n * rounds, min_requests) for n in levels[mode]) for mode in levels}
        planned = {mode: requests_of(mode, counts[mode], duration) for mode in levels}
        longest = max(len(p) + TOKENS_PER_FRAME * f for reqs in planned.values() for p, f in reqs)
        ctx_per_slot = -(-(longest + 16) // 256) * 256
        penalty_window = ctx_per_slot

        def bodies(reqs):
            return [(completion_body(p, TOKENS_PER_FRAME * f, repetition_penalty, penalty_window), f) for p, f in reqs]

        args = server_args(b, gguf, free_port(), threads=threads, parallel=parallel, ctx_per_slot=ctx_per_slot,
                           end_of_speech=fmt.end_of_speech)
        result["server"] = {"args": args[1:], "parallel": parallel, "ctx_per_slot": ctx_per_slot, "threads": threads,
                            "penalty_window": penalty_window, "samplers": list(SAMPLERS), "cache_prompt": True,
                            "first_chunk_frames": {str(n): first_window(policy, 10**6, n) for n in
                                                   sorted({n for mode_levels in levels.values() for n in mode_levels})}}
        log_file = Path(work_dir) / "llamacpp" / "llama-server.log"
        log(f"  llama-server: {gguf.name}, --parallel {parallel}, {ctx_per_slot} tokens per slot, {threads} threads "
            f"(log {log_file})")
        with llama_server(args, log_file) as url:
            step = "measure"
            first_mode = next(iter(levels))
            warm = requests_of(first_mode, 2, min(duration, 1.0))
            asyncio.run(run_level(url, 2, bodies(warm), speaker))  # not measured: first requests pay for setup
            result["voices"] = {}
            for mode, mode_levels in levels.items():
                rows = []
                for n in mode_levels:
                    count = max(n * rounds, min_requests)
                    log(f"  llama.cpp {mode} voice: {count} streams of {duration:g} s at concurrency {n} ...")
                    level = asyncio.run(run_level(url, n, bodies(planned[mode][:count]), speaker))
                    ttfa = level["time_to_first_audio_s"]
                    log(f"    TTFA p50 {_fmt(ttfa['p50'])} s p95 {_fmt(ttfa['p95'])} s, "
                        f"{_fmt(level['tokens_per_s'])} tokens/s, {_fmt(level['audio_s_per_wall_s'])} audio s/s"
                        + (f", errors {level['errors']}" if level["errors"] else ""))
                    rows.append(level)
                result["voices"][mode] = {"levels": rows}
        result["status"] = "ok"
    except BuildFailed as error:
        result.update(step=error.step, reason=error.reason)
        log(f"  llama.cpp skipped: {error}")
    except Exception as error:  # noqa: BLE001 - a result to report, not the end of the run
        result.update(step=step, reason=f"{type(error).__name__}: {error}")
        log(f"  llama.cpp {step} failed: {type(error).__name__}: {error}")
    return result


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3g}"
