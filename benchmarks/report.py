"""Results: targets, comparisons, results.json, results.md, PNG plots and the README's block.

Everything here is pure over the results dict the runner builds (no server, no model), so a
results.json can be re-rendered: `python -m benchmarks readme` reads benchmarks/results/*/.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

RESULTS_FILE = "results.json"
MARKDOWN_FILE = "results.md"
PLOTS = {
    "ttfa": "ttfa_vs_concurrency.png",
    "throughput": "throughput_vs_concurrency.png",
    "step_cost": "step_cost_vs_batch.png",
}
README_START = "<!-- benchmarks:start -->"
README_END = "<!-- benchmarks:end -->"
TARGET_CONCURRENCY = 8
BUSY = 0.25  # CPU busy fraction (sampled while tritone sits idle) above which a run is flagged


# --- comparisons and targets -----------------------------------------------------------------


def _by_concurrency(rows: list[dict]) -> dict[int, dict]:
    return {row["concurrency"]: row for row in rows}


def _ratio(a, b):
    return a / b if a is not None and b else None


def comparisons(results: dict) -> list[dict]:
    """tritone against both baselines, per concurrency level (ratios > 1 favour tritone)."""
    tritone = results["tritone"]["levels"]
    baseline = results.get("baseline") or {}
    sequential = baseline.get("sequential") or {}
    queued = _by_concurrency(sequential.get("levels", []))
    static = _by_concurrency(baseline.get("static", []))
    rows = []
    for level in tritone:
        n = level["concurrency"]
        ttfa = level["time_to_first_audio_s"]
        seq_ttfa = queued.get(n, {}).get("time_to_first_audio_s", {})
        rows.append({
            "concurrency": n,
            "throughput_vs_sequential": _ratio(level["audio_s_per_wall_s"], sequential.get("audio_s_per_wall_s")),
            "throughput_vs_static": _ratio(level["audio_s_per_wall_s"], static.get(n, {}).get("audio_s_per_wall_s")),
            # how many times sooner tritone's first audio comes (p95 against p95)
            "ttfa_p95_speedup_vs_sequential": _ratio(seq_ttfa.get("p95"), ttfa["p95"]),
            "ttfa_p95_speedup_vs_static": _ratio(static.get(n, {}).get("time_to_first_audio_s"), ttfa["p95"]),
        })
    return rows


def _target(name: str, description: str, value, threshold: float, higher_is_better: bool) -> dict:
    if value is None:
        return {"name": name, "target": description, "value": None, "threshold": threshold,
                "higher_is_better": higher_is_better, "passed": None, "margin": None, "note": "not measured in this run"}
    passed = value >= threshold if higher_is_better else value <= threshold
    # margin: how many times better than the threshold (> 1: passed by that factor; < 1: missed)
    margin = (value / threshold if higher_is_better else threshold / value) if value > 0 else None
    return {"name": name, "target": description, "value": value, "threshold": threshold,
            "higher_is_better": higher_is_better, "passed": passed, "margin": margin}


def verdict(target: dict) -> str:
    if target["passed"] is None:
        return "not measured"
    margin = target["margin"]
    if margin is None:
        return "pass" if target["passed"] else "MISS"
    return f"pass, {margin:.3g}x better than the threshold" if target["passed"] else \
        f"MISS, {1 / margin:.3g}x short of the threshold"


def evaluate_targets(results: dict) -> list[dict]:
    n = TARGET_CONCURRENCY
    compare = _by_concurrency(comparisons(results))
    levels = _by_concurrency(results["tritone"]["levels"])
    at_n = compare.get(n, {})
    p95_n = levels.get(n, {}).get("time_to_first_audio_s", {}).get("p95")
    p95_1 = levels.get(1, {}).get("time_to_first_audio_s", {}).get("p95")
    step = results.get("step_cost") or {}
    return [
        _target("throughput_vs_sequential",
                f"aggregate audio s per wall s at {n} streams >= 3x transformers one request at a time",
                at_n.get("throughput_vs_sequential"), 3.0, True),
        _target("throughput_vs_static",
                f"aggregate audio s per wall s at {n} streams above transformers statically batched ({n} prompts)",
                at_n.get("throughput_vs_static"), 1.0, True),
        _target("ttfa_p95_growth", f"time to first audio p95 at {n} streams <= 2x its value at 1 stream",
                _ratio(p95_n, p95_1), 2.0, False),
        _target("decode_step_vs_eager", "a single stream's decode step no slower than transformers' eager step",
                step.get("engine_vs_eager_one_stream"), 1.0, False),
    ]


# --- markdown --------------------------------------------------------------------------------


def _f(value, digits: int = 3, suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}{suffix}"
    return f"{value}{suffix}"


def _ms(seconds) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.0f}"


def machine_line(results: dict) -> str:
    m = results["machine"]
    git = results.get("git", {})
    commit = (git.get("commit") or "unknown")[:10] + (" (+ uncommitted changes)" if git.get("dirty") else "")
    busy = max((v for v in (m.get("cpu_busy") or {}).values() if v is not None), default=None)
    busy = (f" (other work used {busy:.0%} of the CPU while it ran: numbers are pessimistic)"
            if busy is not None and busy > BUSY else "")
    return (f"{m.get('cpu_model', '?')}, {m.get('cores', '?')} cores, {_f(m.get('memory_gib'))} GiB memory, "
            f"Triton {results.get('server', {}).get('triton_version', '?')}; commit {commit}; "
            f"{results.get('created', '')}{busy}")


def target_table(targets: list[dict]) -> list[str]:
    lines = ["| Target | Measured | Threshold | Result |", "|---|---|---|---|"]
    for t in targets:
        measured = "-" if t["value"] is None else f"{_f(t['value'])}x"
        lines.append(f"| {t['target']} | {measured} | {_f(t['threshold'])}x | {verdict(t)} |")
    return lines


def tritone_table(results: dict) -> list[str]:
    lines = [
        "| Streams | Requests (ok) | TTFA p50 / p95 / p99 (ms) | RTF per stream p50 / p95 | Underruns (chunks, streams, stall s) "
        "| Audio s per wall s | Decode occupancy |",
        "|---|---|---|---|---|---|---|",
    ]
    for level in results["tritone"]["levels"]:
        t, r, u = level["time_to_first_audio_s"], level["real_time_factor"], level["underruns"]
        lines.append(
            f"| {level['concurrency']} | {level['requests']} ({level['completed']}) | "
            f"{_ms(t['p50'])} / {_ms(t['p95'])} / {_ms(t['p99'])} | {_f(r['p50'])} / {_f(r['p95'])} | "
            f"{u['chunks']}, {u['streams']}, {_f(u['stall_s'])} | {_f(level['audio_s_per_wall_s'])} | "
            f"{_f(level['decode']['occupancy'])} |")
    return lines


def baseline_table(results: dict) -> list[str]:
    baseline = results.get("baseline")
    if not baseline:
        return ["(baselines not run)"]
    seq = baseline["sequential"]
    queued = _by_concurrency(seq["levels"])
    static = _by_concurrency(baseline["static"])
    compare = _by_concurrency(comparisons(results))
    lines = [
        f"One at a time: {seq['requests']} requests, {_f(sum(seq['service_s']) / len(seq['service_s']))} s each, "
        f"**{_f(seq['audio_s_per_wall_s'])} audio s per wall s**. Time to first audio is the whole latency "
        f"(nothing streams); with N clients arriving together it is queued behind the ones before.",
        "",
        "| Streams | tritone audio s/s | one-at-a-time audio s/s (x tritone) | static batch audio s/s (x tritone) "
        "| TTFA p95 (ms): tritone / one-at-a-time / static |",
        "|---|---|---|---|---|",
    ]
    for level in results["tritone"]["levels"]:
        n = level["concurrency"]
        c = compare[n]
        s = static.get(n)
        lines.append(
            f"| {n} | {_f(level['audio_s_per_wall_s'])} | {_f(seq['audio_s_per_wall_s'])} "
            f"({_f(c['throughput_vs_sequential'])}x) | "
            f"{_f(s['audio_s_per_wall_s']) if s else '-'} ({_f(c['throughput_vs_static'])}x) | "
            f"{_ms(level['time_to_first_audio_s']['p95'])} / "
            f"{_ms(queued.get(n, {}).get('time_to_first_audio_s', {}).get('p95'))} / "
            f"{_ms(s['time_to_first_audio_s']) if s else '-'} |")
    return lines


def step_table(results: dict) -> list[str]:
    step = results.get("step_cost")
    if not step:
        return ["(step cost not measured)"]
    lines = ["| Streams in the batch (rows) | ms per step p50 | ms per request-step | Decode-only audio s per wall s |",
             "|---|---|---|---|"]
    for row in step["engine"]:
        lines.append(f"| {row['streams']} ({row['rows']}) | {_f(row['ms_per_step']['p50'])} | "
                     f"{_f(row['ms_per_request_step'])} | {_f(row['decode_audio_s_per_wall_s'])} |")
    eager = step.get("transformers_eager")
    if eager:
        lines += ["", f"transformers eager decode step, 1 request with guidance ({eager['rows']} rows): "
                      f"**{_f(eager['ms_per_step'])} ms** ({eager['method']})."]
    return lines


def perf_analyzer_section(results: dict) -> list[str]:
    pa = results.get("perf_analyzer") or {}
    if pa.get("status") != "ok":
        return [f"perf_analyzer: {pa.get('status', 'not run')}" + (f" ({pa['reason']})" if pa.get("reason") else "")]
    suite = pa["result"]
    lines = ["| Model | Batching | Concurrency | Infer/s | Latency p50 / p95 (ms) | Server batch size | "
             "First response p50 (ms) |", "|---|---|---|---|---|---|---|"]
    for name, recipe in (suite.get("recipes") or {}).items():
        for run in recipe.get("runs", []):
            if "error" in run:
                lines.append(f"| {name} | {run.get('batching')} | {run.get('concurrency')} | error: "
                             f"{str(run['error']).splitlines()[0][:80]} | | | |")
                continue
            latency = run.get("latency_ms") or {}
            first = (run.get("first_response_ms") or {}).get("p50")
            lines.append(f"| {name} | {run.get('batching')} | {run.get('concurrency')} | "
                         f"{_f(run.get('throughput_infer_per_s'))} | {_f(latency.get('p50'))} / {_f(latency.get('p95'))} | "
                         f"{_f(run.get('server_avg_batch_size'))} | {_f(first)} |")
    return lines


def markdown(results: dict) -> str:
    cfg = results["config"]
    lines = [
        f"# tritone benchmark: {results['model']}" + (" (smoke run: checks the recipes run, not speed)"
                                                     if results.get("smoke") else ""),
        "",
        f"Machine: {machine_line(results)}.",
        "",
        f"Workload: {cfg['duration_s']:g} s of audio per request, prompts cycled from a fixed list of "
        f"{len(cfg['prompts'])} with seeds {cfg['seed']}+i, sampling temperature {cfg['sampling']['temperature']:g}, "
        f"top-k {cfg['sampling']['top_k']}, guidance {cfg['sampling']['guidance_scale']:g}, the same for every "
        f"system; {cfg['threads']} threads (torch.set_num_threads and ONNX Runtime). Server: `musicgen` "
        f"max_slots {results.get('server', {}).get('max_slots', '?')}, max_queue "
        f"{results.get('server', {}).get('max_queue', '?')}.",
        "",
        "## Targets",
        "",
        *target_table(results["targets"]),
        "",
        "## tritone: streaming over gRPC",
        "",
        "TTFA: time to first audio. RTF: stream wall time / audio seconds (< 1 is faster than real time). "
        "Underruns: a player starts at the first chunk; a chunk that arrives after the audio before it has "
        "finished playing stalls it. Decode occupancy: mean requests per decode step (engine metrics).",
        "",
        *tritone_table(results),
        "",
        "## Against transformers generate()",
        "",
        *baseline_table(results),
        "",
        "## Cost of a decode step against the batch",
        "",
        *step_table(results),
        "",
        "## perf_analyzer",
        "",
        *perf_analyzer_section(results),
        "",
        "## Plots",
        "",
        *[f"![{key}]({name})" for key, name in PLOTS.items()],
        "",
    ]
    return "\n".join(lines)


# --- plots -----------------------------------------------------------------------------------


def plot(results: dict, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    title = f"{results['model']} on {results['machine'].get('cores', '?')} CPU cores"
    levels = results["tritone"]["levels"]
    xs = [level["concurrency"] for level in levels]
    baseline = results.get("baseline") or {}
    sequential = baseline.get("sequential")
    static = baseline.get("static") or []
    written = []

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for key, style in (("p50", "o-"), ("p95", "s--")):
        ax.plot(xs, [level["time_to_first_audio_s"][key] for level in levels], style, label=f"tritone {key}")
    if sequential:
        ax.plot([r["concurrency"] for r in sequential["levels"]],
                [r["time_to_first_audio_s"]["p95"] for r in sequential["levels"]], "^:",
                label="transformers one at a time p95")
    if static:
        ax.plot([r["concurrency"] for r in static], [r["time_to_first_audio_s"] for r in static], "v:",
                label="transformers static batch")
    ax.set(xscale="log", yscale="log", xlabel="concurrent streams", ylabel="time to first audio (s)", title=title)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    written.append(_save(fig, out_dir / PLOTS["ttfa"]))

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(xs, [level["audio_s_per_wall_s"] for level in levels], "o-", label="tritone (streaming)")
    if sequential:
        ax.plot(xs, [sequential["audio_s_per_wall_s"]] * len(xs), "^:", label="transformers one at a time")
    if static:
        ax.plot([r["concurrency"] for r in static], [r["audio_s_per_wall_s"] for r in static], "v:",
                label="transformers static batch")
    ax.plot(xs, xs, color="grey", linewidth=0.8, label="every stream in real time")
    ax.set(xscale="log", yscale="log", xlabel="concurrent streams", ylabel="audio seconds per wall second",
           title=title)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    written.append(_save(fig, out_dir / PLOTS["throughput"]))

    step = results.get("step_cost")
    if step:
        engine = step["engine"]
        ns = [r["streams"] for r in engine]
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        ax.plot(ns, [r["ms_per_step"]["p50"] for r in engine], "o-", label="tritone step (whole batch)")
        ax.plot(ns, [r["ms_per_request_step"] for r in engine], "s--", label="tritone step per request")
        eager = step.get("transformers_eager")
        if eager:
            ax.axhline(eager["ms_per_step"], color="C3", linestyle=":", label="transformers eager step (1 request)")
        ax.axhline(20.0, color="grey", linewidth=0.8, label="real time for one stream (20 ms)")
        ax.set(xscale="log", yscale="log", xlabel="requests in the decode batch (2 rows each)",
               ylabel="ms per decode step", title=title)
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        written.append(_save(fig, out_dir / PLOTS["step_cost"]))
    return written


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


# --- files -----------------------------------------------------------------------------------


def write_results(results: dict, out_dir: Path) -> dict[str, Path]:
    """results.json, results.md and the plots into `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results["comparisons"] = comparisons(results)
    results["targets"] = evaluate_targets(results)
    plots = plot(results, out_dir)
    results["files"] = sorted([RESULTS_FILE, MARKDOWN_FILE] + [p.name for p in plots])
    (out_dir / RESULTS_FILE).write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out_dir / MARKDOWN_FILE).write_text(markdown(results))
    return {name: out_dir / name for name in results["files"]}


# --- README ----------------------------------------------------------------------------------


def _load_all(results_root: Path) -> list[dict]:
    found = []
    for path in sorted(Path(results_root).glob(f"*/{RESULTS_FILE}")):
        try:
            results = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        results["_dir"] = path.parent
        found.append(results)
    # published numbers: full runs (small-random first); smoke runs only while there is none
    found.sort(key=lambda r: (r["model"] != "small-random", r["model"]))
    full = [r for r in found if not r.get("smoke")]
    return full or found


def readme_block(results_root: Path, readme_dir: Path) -> str:
    runs = _load_all(results_root)
    if not runs:
        return ("No results yet: run `python -m benchmarks run --model small-random` "
                "(and `python -m benchmarks readme`).")
    lines = []
    for results in runs:
        rel = Path(results["_dir"]).resolve().relative_to(Path(readme_dir).resolve()) \
            if Path(results["_dir"]).resolve().is_relative_to(Path(readme_dir).resolve()) else results["_dir"]
        cfg = results["config"]
        lines += [
            f"**{results['model']}**" + (" (smoke run: not a speed measurement)" if results.get("smoke") else "")
            + f", {cfg['duration_s']:g} s per request, measured on {machine_line(results)}. "
              f"Full tables and plots: [{rel}/{MARKDOWN_FILE}]({rel}/{MARKDOWN_FILE}).",
            "",
            *target_table(results["targets"]),
            "",
            *tritone_table(results),
            "",
        ]
        eager = (results.get("step_cost") or {}).get("transformers_eager")
        engine = (results.get("step_cost") or {}).get("engine") or []
        if engine:
            steps = ", ".join(f"{r['streams']}: {_f(r['ms_per_step']['p50'])}" for r in engine)
            lines += [f"Decode step (ms) by streams in the batch: {steps}"
                      + (f"; transformers eager, 1 request: {_f(eager['ms_per_step'])}." if eager else "."), ""]
        seq = (results.get("baseline") or {}).get("sequential")
        if seq:
            lines += [f"transformers one request at a time: {_f(seq['audio_s_per_wall_s'])} audio s per wall s.", ""]
        lines += [f"![throughput]({rel}/{PLOTS['throughput']}) ![ttfa]({rel}/{PLOTS['ttfa']})", ""]
    return "\n".join(lines).rstrip()


def update_readme(readme: Path, results_root: Path) -> bool:
    """Rewrite the block between the markers; True when the file changed."""
    readme = Path(readme)
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        raise ValueError(f"{readme} has no {README_START} ... {README_END} block (add it under '## Performance')")
    block = readme_block(results_root, readme.parent)
    pattern = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.S)
    new = pattern.sub(lambda _: f"{README_START}\n{block}\n{README_END}", text, count=1)
    if new != text:
        readme.write_text(new)
    return new != text
