"""music's benchmark suite (`python -m tritone.benchmarks run --family music`, the default).

Against a running server with the family's models loaded (`musicgen_tokenizer`, `musicgen_text_encoder`,
the `musicgen_text_conditioning` ensemble, `musicgen_codec_decoder`, `musicgen`): perf_analyzer over the family's recipes, then the streaming load generator at each
concurrency level; then, with the server stopped, the engine's decode step against the batch
(step_cost.py), transformers' baselines on the same weights (baseline.py) and transformers'
eager decode step.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from tritone.benchmarks.load import SEED, Workload
from tritone.benchmarks.musicgen.load import PROMPTS, Sampling, requests_for, run_load, stream
from tritone.benchmarks.runner import Configurable, SuiteRun, cores, level_list
from tritone.ensemble import tensors as T
from tritone.ensemble.musicgen.metadata import MusicgenMetadata

DEFAULT_LEVELS = (1, 2, 4, 8, 16)


def add_arguments(group) -> list[argparse.Action]:
    """Its own `run` options."""
    return [group.add_argument("--step-streams", type=level_list,
                               help="engine step-cost batch sizes (default: every level)")]


@dataclass
class Config(Configurable):
    model: str
    smoke: bool = False
    concurrency: list[int] = field(default_factory=lambda: list(DEFAULT_LEVELS))
    duration: float = 5.0  # seconds of audio per request, every system
    rounds: int = 1  # level N streams max(N * rounds, min_requests) requests through N clients
    min_requests: int = 4
    sequential_requests: int = 4  # transformers one at a time: requests measured
    static_levels: list[int] | None = None  # transformers static batches; None: every level
    step_streams: list[int] | None = None  # engine step cost batch sizes; None: the concurrency levels
    step_steps: int = 20
    step_warmup: int = 3
    eager_tokens: tuple[int, int] = (10, 60)  # transformers eager step: generate() at these two lengths
    eager_repeats: int = 2
    threads: int = field(default_factory=cores)
    perf_analyzer: bool = True
    perf_analyzer_smoke: bool = False  # the recipes' smoke settings in a full run (a CPU-sized subset)
    sampling: Sampling = field(default_factory=Sampling)

    SMOKE = dict(duration=1.0, min_requests=2, sequential_requests=2, step_steps=5, step_warmup=1,
                 eager_tokens=(4, 12), eager_repeats=1)

    def as_json(self) -> dict:
        data = asdict(self)
        data["duration_s"] = data.pop("duration")
        data["prompts"] = list(PROMPTS)
        data["seed"] = SEED
        data["static_levels"] = self.static_levels if self.static_levels is not None else self.concurrency
        data["step_streams"] = self.step_streams or self.concurrency
        return data


def workload_for(config: Config, repository: Path) -> Workload:
    """The streams `run` measures (its prompts, seeds and sampling), for recipes that serve variants."""
    codebook_size = MusicgenMetadata.load(Path(repository) / T.MUSICGEN / "1").codebook_size
    return Workload(lambda count, seconds: requests_for(count, seconds, config.sampling, codebook_size), stream,
                    T.MUSICGEN)


def run(
    config: Config,
    repository: Path,
    grpc_url: str,
    metrics_url: str,
    out_dir: Path,
    *,
    stop_server: Callable[[], object] | None = None,
    log=print,
) -> dict:
    """Measure music, write results.json, results.md and the plots into `out_dir`."""
    repository = Path(repository)
    bench = SuiteRun(log)
    say = bench.say
    spec = MusicgenMetadata.load(repository / T.MUSICGEN / "1")
    results = bench.begin(config, spec.checkpoint, T.MUSICGEN, grpc_url, out_dir)

    with bench.phase("tritone_load"):
        say(f"tritone streaming load: concurrency {config.concurrency}, {config.duration:g} s per request")
        levels = asyncio.run(run_load(grpc_url, metrics_url, list(config.concurrency), config.duration,
                                      spec.codebook_size, sampling=config.sampling, rounds=config.rounds,
                                      min_requests=config.min_requests, log=say))
        results["tritone"] = {"system": "tritone on Triton (gRPC streaming, in-flight batching)", "levels": levels}

    bench.go_local(stop_server)
    from tritone.benchmarks.musicgen import baseline, step_cost

    with bench.phase("engine_step_cost"):
        say(f"engine step cost (local ONNX Runtime, {config.threads} threads) ...")
        os.environ.setdefault("TRITONE_ORT_THREADS", str(config.threads))
        engine = step_cost.engine_step_cost(repository, list(config.step_streams or config.concurrency),
                                            steps=config.step_steps, warmup=config.step_warmup,
                                            sampling=config.sampling, log=say)

    with bench.phase("transformers_baselines"):
        say(f"transformers baselines on {baseline.checkpoint_dir(repository)} ({config.threads} threads) ...")
        model, tokenizer = baseline.load_model(baseline.checkpoint_dir(repository), config.threads)
        results["baseline"] = baseline.run_baselines(
            model, tokenizer, list(config.concurrency), config.duration, sampling=config.sampling,
            sequential_requests=config.sequential_requests, static_levels=config.static_levels, log=say)

    with bench.phase("transformers_step_cost"):
        short, long = config.eager_tokens
        eager = step_cost.transformers_decode_step(model, tokenizer, short=short, long=long,
                                                   repeats=config.eager_repeats, sampling=config.sampling, log=say)
        results["step_cost"] = step_cost.step_cost_summary(engine, eager)
    del model
    return bench.finish(results, out_dir)
