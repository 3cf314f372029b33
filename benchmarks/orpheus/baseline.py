"""What a user would run instead for speech: transformers' LlamaForCausalLM.generate() + SNAC decode.

On the very weights tritone serves (the LM export saved under orpheus/1/checkpoint, the codec under
orpheus/1/codec; for a hub export, the checkpoints speech.json names), with the same prompts
(the Orpheus layout of ensemble/orpheus/format.py, cloned voice included), greedy decoding, the
same repetition penalty and `max_duration` in frames, under the Orpheus grammar as a
`prefix_allowed_tokens_fn` (a code for each frame position, end_of_speech only at a frame's
end), then `SNAC.decode` of the whole answer, on torch.set_num_threads(cores):

- one request at a time, as a FastAPI wrapper serves: tokenize, generate, decode, return the
  clip. Its throughput is all audio over the sum of service times; nothing is streamed, so a
  request's time to first audio is its whole latency, queued behind the clients before it
  (benchmarks/baseline.py sequential_result);
- statically batched: one left-padded generate() over the N prompts of a level, then the codec;
  everybody gets audio when the whole batch is done.

`prompt_ids` and `generate_codes` (there with eager attention) are also the reference the speech
tests check tritone's codes against (tests/orpheus_reference.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tritone.benchmarks.baseline import sequential_result, static_result
from tritone.ensemble import tensors as T
from tritone.ensemble.orpheus.format import TOKENS_PER_FRAME, OrpheusFormat, frame_to_levels
from tritone.ensemble.orpheus.metadata import CHECKPOINT_DIR, CODEC_DIR, OrpheusMetadata


@dataclass
class SpeechBaseline:
    """The LM, its tokenizer, the codec and the export's metadata, loaded as a user loads them."""

    lm: object  # LlamaForCausalLM
    tokenizer: object
    codec: object  # snac.SNAC
    meta: OrpheusMetadata

    @property
    def format(self) -> OrpheusFormat:
        return self.meta.format


def _source(version: Path, directory: str, fallback: str) -> str:
    saved = version / directory
    return str(saved) if (saved / "config.json").is_file() else fallback


def load_speech_baseline(repository: Path, threads: int | None = None,
                         attn_implementation: str | None = None) -> SpeechBaseline:
    """transformers defaults (SDPA attention unless told), fp32, eval; `threads` torch threads."""
    import torch
    from snac import SNAC
    from transformers import AutoTokenizer, LlamaForCausalLM

    if threads:
        torch.set_num_threads(threads)
    version = Path(repository) / T.ORPHEUS / "1"
    meta = OrpheusMetadata.load(version)
    checkpoint = _source(version, CHECKPOINT_DIR, meta.checkpoint)
    options = {"attn_implementation": attn_implementation} if attn_implementation else {}
    lm = LlamaForCausalLM.from_pretrained(checkpoint, dtype=torch.float32, **options).eval()
    codec = SNAC.from_pretrained(_source(version, CODEC_DIR, meta.codec_checkpoint)).eval()
    return SpeechBaseline(lm, AutoTokenizer.from_pretrained(checkpoint), codec, meta)


def prompt_ids(tokenizer, fmt: OrpheusFormat, text: str, voice: str | None = None,
               reference_text: str | None = None, reference_codes: np.ndarray | None = None) -> list[int]:
    """The Orpheus prompt as the pipeline builds it: "voice: text", a cloned voice's turn before it."""
    text = f"{voice}: {text}" if voice else text
    transcript = None if reference_text is None else tokenizer(reference_text)["input_ids"]
    return fmt.prompt_ids(tokenizer(text)["input_ids"], transcript, reference_codes)


def generate_codes(lm, fmt: OrpheusFormat, prompts: list[list[int]], frame_limit: int,
                   repetition_penalty: float = 1.0) -> list[np.ndarray]:
    """Greedy generate() over `prompts` (left-padded into one batch) under the Orpheus grammar ->
    codes int64 [7, frames] per prompt (frames <= frame_limit; fewer where it said end_of_speech)."""
    import torch

    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), fmt.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        input_ids[row, width - len(prompt):] = torch.tensor(prompt)
        attention_mask[row, width - len(prompt):] = 1

    def allowed(batch_id, ids):
        return fmt.allowed(len(ids) - width).tolist()

    with torch.inference_mode():
        out = lm.generate(
            input_ids, attention_mask=attention_mask, do_sample=False, max_new_tokens=TOKENS_PER_FRAME * frame_limit,
            eos_token_id=fmt.end_of_speech, pad_token_id=fmt.pad_token_id, repetition_penalty=repetition_penalty,
            prefix_allowed_tokens_fn=allowed,
        )
    codes = []
    for answer in out[:, width:].numpy():
        ends = np.flatnonzero(answer == fmt.end_of_speech)
        codes.append(fmt.tokens_to_codes(answer[: ends[0]] if ends.size else answer))
    return codes


def decode_audio(codec, codes: list[np.ndarray]) -> list[np.ndarray]:
    """SNAC.decode of each answer (one call for the batch when their lengths agree) -> audio [samples]."""
    import torch

    if not codes:
        return []
    if len({c.shape[1] for c in codes}) > 1:
        return [audio for c in codes for audio in decode_audio(codec, [c])]
    if codes[0].shape[1] == 0:
        return [np.zeros(0, np.float32) for _ in codes]
    levels = [torch.from_numpy(np.ascontiguousarray(level)) for level in frame_to_levels(np.stack(codes))]
    with torch.inference_mode():
        audio = codec.decode(levels)  # [B, 1, samples]
    return list(audio[:, 0].numpy())


def speak(baseline: SpeechBaseline, requests: list, repetition_penalty: float) -> tuple[float, list[np.ndarray]]:
    """What a server without streaming does for a batch of `requests` (SpeechRequest-like: text,
    voice, reference_text, reference_codes, max_duration): tokenize, generate, decode. Returns
    (wall seconds, codes per request)."""
    fmt = baseline.format
    started = time.perf_counter()
    prompts = [prompt_ids(baseline.tokenizer, fmt, r.text, r.voice, r.reference_text, r.reference_codes)
               for r in requests]
    frame_limit = max(max(1, int(r.max_duration * baseline.meta.frame_rate)) for r in requests)
    codes = generate_codes(baseline.lm, fmt, prompts, frame_limit, repetition_penalty)
    decode_audio(baseline.codec, codes)
    return time.perf_counter() - started, codes


def run_speech_baselines(
    baseline: SpeechBaseline,
    make_requests,
    levels: list[int],
    duration: float,
    *,
    repetition_penalty: float,
    sequential_requests: int = 4,
    static_levels: list[int] | None = None,
    log=print,
) -> tuple[dict, list[np.ndarray]]:
    """Both baselines over `make_requests(count, duration)`; returns (results, the codes of the
    one-at-a-time requests, to compare with what tritone streamed for the same requests)."""
    meta = baseline.meta
    seconds = lambda codes: sum(c.shape[1] for c in codes) * meta.frame_samples / meta.sample_rate  # noqa: E731
    speak(baseline, make_requests(1, min(duration, 0.5)), repetition_penalty)  # warm-up, not measured

    log(f"  transformers one at a time: {sequential_requests} requests of up to {duration:g} s ...")
    service, audio_s, sequential_codes = [], 0.0, []
    for request in make_requests(sequential_requests, duration):
        wall, codes = speak(baseline, [request], repetition_penalty)
        service.append(wall)
        audio_s += seconds(codes)
        sequential_codes += codes
    sequential = sequential_result(service, audio_s, levels,
                                   frames=[int(c.shape[1]) for c in sequential_codes])
    log(f"    {np.median(service):.3g} s per request, {sequential['audio_s_per_wall_s']:.3g} audio s/s")

    static = []
    for n in static_levels if static_levels is not None else levels:
        log(f"  transformers static batch of {n} ...")
        wall, codes = speak(baseline, make_requests(n, duration), repetition_penalty)
        static.append(static_result(n, wall, seconds(codes), log, frames=[int(c.shape[1]) for c in codes]))
    return {
        "system": "transformers LlamaForCausalLM.generate() (greedy, Orpheus grammar) + SNAC.decode",
        "attn_implementation": getattr(baseline.lm.config, "_attn_implementation", None),
        "sequential": sequential,
        "static": static,
    }, sequential_codes
