"""music's part of the results (benchmarks/report.py loops over every family's): its run sits at
the top level of results.json (as before other families existed), its targets, its sections of
results.md, its plots and its README block."""

from __future__ import annotations

from pathlib import Path

from tritone.benchmarks.report import (
    MARKDOWN_FILE, compare_levels, compare_table, finish_plot, levels_table, machine_line, make_target, num,
    perf_analyzer_section, plot_series, plot_title, served_share_targets, served_vs_decode_only, step_rows_table,
    streaming_targets, target_table, throughput_plot, ttfa_plot,
)

SECTION = None  # results.json's top level
PLOTS = {
    "ttfa": "ttfa_vs_concurrency.png",
    "throughput": "throughput_vs_concurrency.png",
    "step_cost": "step_cost_vs_batch.png",
}


def find(results: dict) -> dict | None:
    """Its run in a results.json (the top level, when the file has one)."""
    return results if "tritone" in results else None


def evaluate(results: dict) -> None:
    """tritone against both baselines per level, and the targets."""
    results["comparisons"] = comparisons(results)
    results["targets"] = evaluate_targets(results)


def comparisons(results: dict) -> list[dict]:
    """tritone against both baselines, per concurrency level (ratios > 1 favour tritone)."""
    return compare_levels(results["tritone"]["levels"], results.get("baseline"))


def served_share(results: dict) -> dict[int, float]:
    return served_vs_decode_only(results["tritone"]["levels"], (results.get("step_cost") or {}).get("engine") or [])


def evaluate_targets(results: dict) -> list[dict]:
    step = results.get("step_cost") or {}
    return [
        *streaming_targets(results["tritone"]["levels"], results.get("baseline")),
        make_target("decode_step_vs_eager", "a single stream's decode step no slower than transformers' eager step",
                    step.get("engine_vs_eager_one_stream"), 1.0, False),
        *served_share_targets(served_share(results)),
    ]


def tritone_table(results: dict) -> list[str]:
    return levels_table(results["tritone"]["levels"])


def baseline_table(results: dict) -> list[str]:
    return compare_table(results["tritone"]["levels"], results.get("baseline"))


def step_table(results: dict) -> list[str]:
    step = results.get("step_cost")
    if not step:
        return ["(step cost not measured)"]
    lines = step_rows_table(step["engine"], served_share(results))
    eager = step.get("transformers_eager")
    if eager:
        lines += ["", f"transformers eager decode step, 1 request with guidance ({eager['rows']} rows): "
                      f"**{num(eager['ms_per_step'])} ms** ({eager['method']})."]
    return lines


def markdown(results: dict) -> list[str]:
    cfg = results["config"]
    return [
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


def plots(results: dict, out_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    title = plot_title(results)
    series = [plot_series(results["tritone"]["levels"], results.get("baseline"))]
    written = [ttfa_plot(series, title, out_dir / PLOTS["ttfa"]),
               throughput_plot(series, title, out_dir / PLOTS["throughput"])]
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
        written.append(finish_plot(fig, ax, [{}], ns, out_dir / PLOTS["step_cost"]))
    return written


def readme(results: dict, rel) -> list[str]:
    """Its README block for one model's run (`rel`: the results' directory from the README)."""
    cfg = results["config"]
    lines = [
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
        steps = ", ".join(f"{r['streams']}: {num(r['ms_per_step']['p50'])}" for r in engine)
        lines += [f"Decode step (ms) by streams in the batch: {steps}"
                  + (f"; transformers eager, 1 request: {num(eager['ms_per_step'])}." if eager else "."), ""]
    seq = (results.get("baseline") or {}).get("sequential")
    if seq:
        lines += [f"transformers one request at a time: {num(seq['audio_s_per_wall_s'])} audio s per wall s.", ""]
    lines += [f"![throughput]({rel}/{PLOTS['throughput']}) ![ttfa]({rel}/{PLOTS['ttfa']})", ""]
    return lines
