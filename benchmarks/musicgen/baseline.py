"""What a user would run instead: transformers' MusicgenForConditionalGeneration.generate().

On the very weights tritone serves (the checkpoint export saves under musicgen/1/checkpoint),
with the same prompts, durations and sampling (do_sample, top-k 250, guidance 3), on
torch.set_num_threads(cores):

- one request at a time, as a FastAPI wrapper around the model serves: its throughput is all
  audio over the sum of service times. Nothing is streamed, so a request's time to first audio
  is its whole latency; with N clients arriving at once and served in turn, client i waits for
  the i requests before it and its own (computed from the measured service times);
- statically batched: one generate() over the N prompts of a level at once; everybody gets
  audio when the whole batch is done.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from tritone.benchmarks.baseline import sequential_result, static_result
from tritone.benchmarks.musicgen.load import Sampling, workload
from tritone.ensemble import tensors as T
from tritone.ensemble.musicgen.delay_pattern import frames_for, num_steps
from tritone.ensemble.musicgen.metadata import CHECKPOINT_DIR


def checkpoint_dir(repository: Path) -> Path:
    path = Path(repository) / T.MUSICGEN / "1" / CHECKPOINT_DIR
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no transformers checkpoint at {path}: the baseline needs the weights export saved "
                                f"(random checkpoints are saved there; for a hub model export it from a directory)")
    return path


def load_model(checkpoint: Path, threads: int):
    """(model, tokenizer) as a user loads them: defaults (SDPA attention), fp32, eval, `threads` threads."""
    import torch
    from transformers import AutoTokenizer, MusicgenForConditionalGeneration

    torch.set_num_threads(threads)
    model = MusicgenForConditionalGeneration.from_pretrained(str(checkpoint)).eval()
    return model, AutoTokenizer.from_pretrained(str(checkpoint))


def max_new_tokens(model, duration: float) -> int:
    """Decode steps for `duration` seconds: frames plus the delay pattern's K - 1 (as tritone runs)."""
    codec = model.config.audio_encoder
    frame_rate = round(codec.sampling_rate / int(np.prod(codec.upsampling_ratios)))
    return num_steps(frames_for(duration, frame_rate), model.decoder.num_codebooks)


def generate(model, tokenizer, prompts: list[str], new_tokens: int, sampling: Sampling, seed: int):
    """One generate() call over `prompts`; returns (wall seconds, audio [B, samples])."""
    import torch

    torch.manual_seed(seed)
    started = time.perf_counter()
    with torch.inference_mode():
        inputs = tokenizer(prompts, padding=True, return_tensors="pt")
        audio = model.generate(
            **inputs,
            do_sample=True,
            temperature=sampling.temperature,
            top_k=sampling.top_k,
            guidance_scale=sampling.guidance_scale,
            max_new_tokens=new_tokens,
        )
    return time.perf_counter() - started, audio[:, 0].numpy()


def run_baselines(
    model,
    tokenizer,
    levels: list[int],
    duration: float,
    *,
    sampling: Sampling = Sampling(),
    sequential_requests: int = 8,
    static_levels: list[int] | None = None,
    log=print,
) -> dict:
    sample_rate = model.config.audio_encoder.sampling_rate
    new_tokens = max_new_tokens(model, duration)
    generate(model, tokenizer, [workload(1)[0][0]], min(new_tokens, 20), sampling, 0)  # warm-up, not measured

    log(f"  transformers one at a time: {sequential_requests} requests of {duration:g} s ...")
    service, audio_s = [], 0.0
    for prompt, seed in workload(sequential_requests):
        wall, audio = generate(model, tokenizer, [prompt], new_tokens, sampling, seed)
        service.append(wall)
        audio_s += audio.shape[-1] / sample_rate
    sequential = sequential_result(service, audio_s, levels)
    log(f"    {np.median(service):.3g} s per request, {sequential['audio_s_per_wall_s']:.3g} audio s/s")

    static = []
    for n in static_levels if static_levels is not None else levels:
        log(f"  transformers static batch of {n} ...")
        prompts = [prompt for prompt, _ in workload(n)]
        wall, audio = generate(model, tokenizer, prompts, new_tokens, sampling, workload(n)[0][1])
        static.append(static_result(n, wall, audio.shape[0] * audio.shape[-1] / sample_rate, log))
    return {
        "system": "transformers MusicgenForConditionalGeneration.generate()",
        "max_new_tokens": new_tokens,
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "sequential": sequential,
        "static": static,
    }
