"""Results: targets, comparisons, results.json, results.md, PNG plots and the README's block.

Everything here is pure over the results dict the runner builds (no server, no model), so a
results.json can be re-rendered: `python -m tritone.benchmarks readme` reads benchmarks/results/*/.

What is here is shared; each registered family's part is its benchmarks/<name>/report.py (found
through the registry): SECTION (where results.json keeps its run: None for the top level, music's
place from before other families existed; else a key, "speech"), PLOTS, find(results) (its run in a
results.json, or None), evaluate(run) (adds comparisons and targets), markdown(run), plots(run,
out_dir) and readme(run, rel). One results.json per model holds every family's run; a run of one
family keeps the others' from the file it finds. results.md and the README block list the
families in registry order.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tritone.benchmarks import registry
from tritone.ensemble.families import FAMILIES

RESULTS_FILE = "results.json"
MARKDOWN_FILE = "results.md"
README_START = "<!-- benchmarks:start -->"
README_END = "<!-- benchmarks:end -->"
TARGET_CONCURRENCY = 8
BUSY = 0.25  # CPU busy fraction (sampled while tritone sits idle) above which a run is flagged


def family_reports() -> list:
    """Every registered family's report module, in registry order."""
    return [registry.report(name) for name in FAMILIES]


def report_of(results: dict):
    """The report module of the family that produced `results` (its "family", the label; a run
    written before runs were labelled is the top-level family's)."""
    label = results.get("family")
    for name in FAMILIES:
        family = registry.report(name)
        if registry.label(name) == label or (label is None and family.SECTION is None):
            return family
    raise ValueError(f"results: no registered family is labelled {label!r}")


# --- comparisons and targets -----------------------------------------------------------------


def by_concurrency(rows: list[dict]) -> dict[int, dict]:
    return {row["concurrency"]: row for row in rows}


def ratio(a, b):
    return a / b if a is not None and b else None


def compare_levels(tritone: list[dict], baseline: dict | None) -> list[dict]:
    baseline = baseline or {}
    sequential = baseline.get("sequential") or {}
    queued = by_concurrency(sequential.get("levels", []))
    static = by_concurrency(baseline.get("static", []))
    rows = []
    for level in tritone:
        n = level["concurrency"]
        ttfa = level["time_to_first_audio_s"]
        seq_ttfa = queued.get(n, {}).get("time_to_first_audio_s", {})
        rows.append({
            "concurrency": n,
            "throughput_vs_sequential": ratio(level["audio_s_per_wall_s"], sequential.get("audio_s_per_wall_s")),
            "throughput_vs_static": ratio(level["audio_s_per_wall_s"], static.get(n, {}).get("audio_s_per_wall_s")),
            # how many times sooner tritone's first audio comes (p95 against p95)
            "ttfa_p95_speedup_vs_sequential": ratio(seq_ttfa.get("p95"), ttfa["p95"]),
            "ttfa_p95_speedup_vs_static": ratio(static.get(n, {}).get("time_to_first_audio_s"), ttfa["p95"]),
        })
    return rows


def make_target(name: str, description: str, value, threshold: float, higher_is_better: bool) -> dict:
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


def streaming_targets(levels: list[dict], baseline: dict | None, prefix: str = "", what: str = "") -> list[dict]:
    """The targets both families share, at TARGET_CONCURRENCY streams: throughput against both
    baselines, and how much the first audio's p95 grows from 1 stream."""
    n = TARGET_CONCURRENCY
    at_n = by_concurrency(compare_levels(levels, baseline)).get(n, {})
    by_n = by_concurrency(levels)
    p95_n = by_n.get(n, {}).get("time_to_first_audio_s", {}).get("p95")
    p95_1 = by_n.get(1, {}).get("time_to_first_audio_s", {}).get("p95")
    return [
        make_target(f"{prefix}throughput_vs_sequential",
                    f"{what}aggregate audio s per wall s at {n} streams >= 3x transformers one request at a time",
                    at_n.get("throughput_vs_sequential"), 3.0, True),
        make_target(f"{prefix}throughput_vs_static",
                    f"{what}aggregate audio s per wall s at {n} streams above transformers statically batched "
                    f"({n} prompts)",
                    at_n.get("throughput_vs_static"), 1.0, True),
        make_target(f"{prefix}ttfa_p95_growth",
                    f"{what}time to first audio p95 at {n} streams <= 2x its value at 1 stream",
                    ratio(p95_n, p95_1), 2.0, False),
    ]


# --- markdown --------------------------------------------------------------------------------


SERVED_SHARE = 0.85  # served throughput should keep this share of what the LM step alone would give
SERVED_LEVELS = (1, 8)


def served_vs_decode_only(levels: list[dict], step_rows: list[dict]) -> dict[int, float]:
    """Per stream count: served audio s per wall s / the decode-only ceiling at that batch (the engine's step
    timed alone): what everything around the step costs (sampling, codec windows, the emitter, BLS, gRPC)."""
    served = {level["concurrency"]: level.get("audio_s_per_wall_s") for level in levels}
    return {row["streams"]: served[row["streams"]] / row["decode_audio_s_per_wall_s"] for row in step_rows
            if served.get(row["streams"]) and row.get("decode_audio_s_per_wall_s")}


def served_share_targets(share: dict[int, float], what: str = "") -> list[dict]:
    return [make_target(f"served_vs_decode_only_{n}", f"{what}served audio s per wall s at {n} stream{'s' * (n > 1)} "
                        f">= {SERVED_SHARE:.0%} of decode-only (the LM step alone)", share.get(n), SERVED_SHARE, True)
            for n in SERVED_LEVELS]


def step_rows_table(rows: list[dict], share: dict[int, float], rows_label: str = "rows") -> list[str]:
    """The engine's step timed alone per batch, and served / decode-only where the level was served."""
    lines = [f"| Streams in the batch ({rows_label}) | ms per step p50 | ms per request-step | "
             "Decode-only audio s per wall s | Served / decode-only |", "|---|---|---|---|---|"]
    for row in rows:
        served = f"{share[row['streams']]:.0%}" if row["streams"] in share else "-"
        lines.append(f"| {row['streams']} ({row['rows']}) | {num(row['ms_per_step']['p50'])} | "
                     f"{num(row['ms_per_request_step'])} | {num(row['decode_audio_s_per_wall_s'])} | {served} |")
    return lines


def num(value, digits: int = 3, suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 10 ** digits:  # whole numbers, not 1.75e+03
            return f"{value:.0f}{suffix}"
        return f"{value:.{digits}g}{suffix}"
    return f"{value}{suffix}"


def millis(seconds) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.0f}"


def machine_line(results: dict) -> str:
    m = results["machine"]
    git = results.get("git", {})
    commit = (git.get("commit") or "unknown")[:10] + (" (+ uncommitted changes)" if git.get("dirty") else "")
    busy = max((v for v in (m.get("cpu_busy") or {}).values() if v is not None), default=None)
    busy = (f" (other work used {busy:.0%} of the CPU while it ran: numbers are pessimistic)"
            if busy is not None and busy > BUSY else "")
    flags = m.get("cpu_flags") or {}
    shown = f" (flags: {', '.join(flag for flag, has in flags.items() if has) or 'none of avx2/avx512/amx'})" if flags else ""
    return (f"{m.get('cpu_model', '?')}{shown}, {m.get('cores', '?')} cores, {num(m.get('memory_gib'))} GiB memory, "
            f"Triton {results.get('server', {}).get('triton_version', '?')}; commit {commit}; "
            f"{results.get('created', '')}{busy}")


def target_table(targets: list[dict]) -> list[str]:
    lines = ["| Target | Measured | Threshold | Result |", "|---|---|---|---|"]
    for t in targets:
        measured = "-" if t["value"] is None else f"{num(t['value'])}x"
        lines.append(f"| {t['target']} | {measured} | {num(t['threshold'])}x | {verdict(t)} |")
    return lines


def levels_table(levels: list[dict], audio_column: bool = False) -> list[str]:
    """tritone's streams per level; `audio_column`: the audio a request produced (min-max s), for
    speech, which may end before its max_duration."""
    audio = " Audio per request (s) |" if audio_column else ""
    lines = [
        "| Streams | Requests (ok) | TTFA p50 / p95 / p99 (ms) | RTF per stream p50 / p95 | Underruns (chunks, streams, stall s) "
        f"| Audio s per wall s | Decode occupancy |{audio}",
        "|---|---|---|---|---|---|---|" + ("---|" if audio_column else ""),
    ]
    for level in levels:
        t, r, u = level["time_to_first_audio_s"], level["real_time_factor"], level["underruns"]
        per_request = level.get("audio_s_per_request") or {}
        lines.append(
            f"| {level['concurrency']} | {level['requests']} ({level['completed']}) | "
            f"{millis(t['p50'])} / {millis(t['p95'])} / {millis(t['p99'])} | {num(r['p50'])} / {num(r['p95'])} | "
            f"{u['chunks']}, {u['streams']}, {num(u['stall_s'])} | {num(level['audio_s_per_wall_s'])} | "
            f"{num(level['decode']['occupancy'])} |"
            + (f" {num(per_request.get('min'))}-{num(per_request.get('max'))} |" if audio_column else ""))
    return lines


def compare_table(levels: list[dict], baseline: dict | None) -> list[str]:
    if not baseline:
        return ["(baselines not run)"]
    seq = baseline["sequential"]
    queued = by_concurrency(seq["levels"])
    static = by_concurrency(baseline["static"])
    compare = by_concurrency(compare_levels(levels, baseline))
    lines = [
        f"One at a time: {seq['requests']} requests, {num(sum(seq['service_s']) / len(seq['service_s']))} s each, "
        f"**{num(seq['audio_s_per_wall_s'])} audio s per wall s**. Time to first audio is the whole latency "
        f"(nothing streams); with N clients arriving together it is queued behind the ones before.",
        "",
        "| Streams | tritone audio s/s | one-at-a-time audio s/s (x tritone) | static batch audio s/s (x tritone) "
        "| TTFA p95 (ms): tritone / one-at-a-time / static |",
        "|---|---|---|---|---|",
    ]
    for level in levels:
        n = level["concurrency"]
        c = compare[n]
        s = static.get(n)
        lines.append(
            f"| {n} | {num(level['audio_s_per_wall_s'])} | {num(seq['audio_s_per_wall_s'])} "
            f"({num(c['throughput_vs_sequential'])}x) | "
            f"{num(s['audio_s_per_wall_s']) if s else '-'} ({num(c['throughput_vs_static'])}x) | "
            f"{millis(level['time_to_first_audio_s']['p95'])} / "
            f"{millis(queued.get(n, {}).get('time_to_first_audio_s', {}).get('p95'))} / "
            f"{millis(s['time_to_first_audio_s']) if s else '-'} |")
    return lines


def perf_analyzer_section(results: dict) -> list[str]:
    pa = results.get("perf_analyzer") or {}
    if pa.get("status") != "ok":
        return [f"perf_analyzer: {pa.get('status', 'not run')}" + (f" ({pa['reason']})" if pa.get("reason") else "")]
    suite = pa["result"]
    lines = []
    if suite.get("smoke") and not results.get("smoke"):
        lines += ["The recipes ran at their smoke settings (concurrency 1 and 2, windows of a few requests, "
                  "--perf-analyzer-smoke): what fits this machine's time budget.", ""]
    lines += ["| Model | Batching | Concurrency | Infer/s | Latency p50 / p95 (ms) | Server batch size | "
              "First response p50 (ms) | Audio s per s |", "|---|---|---|---|---|---|---|---|"]
    for name, recipe in (suite.get("recipes") or {}).items():
        for run in recipe.get("runs", []):
            if "error" in run:
                lines.append(f"| {name} | {run.get('batching')} | {run.get('concurrency')} | error: "
                             f"{str(run['error']).splitlines()[0][:80]} | | | | |")
                continue
            latency = run.get("latency_ms") or {}
            first = (run.get("first_response_ms") or {}).get("p50")
            lines.append(f"| {name} | {run.get('batching')} | {run.get('concurrency')} | "
                         f"{num(run.get('throughput_infer_per_s'))} | {num(latency.get('p50'))} / {num(latency.get('p95'))} | "
                         f"{num(run.get('server_avg_batch_size'))} | {num(first)} | {num(run.get('audio_s_per_s'))} |")
    return lines


def markdown(results: dict) -> str:
    """results.md: every family's run the file holds, in registry order."""
    lines = []
    for family in family_reports():
        run = family.find(results)
        if run:
            lines += family.markdown(run)
    return "\n".join(lines)


# --- plots -----------------------------------------------------------------------------------


def plot_series(levels: list[dict], baseline: dict | None, label: str = "", style: str = "",
                baseline_name: str = "transformers") -> dict:
    """One system's curves; `baseline_name` names what the baselines ran (transformers, a reference package)."""
    return {"levels": levels, "baseline": baseline or {}, "label": label, "style": style,
            "baseline_name": baseline_name}


def _figure(series: list[dict]):
    """(figure, axes, every concurrency level of the series); wider for several series."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4 if len(series) == 1 else 9.0, 4.2))
    return fig, ax, sorted({level["concurrency"] for s in series for level in s["levels"]})


def _each(series: list[dict]):
    """Per series: (series, its levels' concurrency, sequential baseline or None, static batches)."""
    for s in series:
        baseline = s["baseline"]
        x = [level["concurrency"] for level in s["levels"]]
        yield s, x, baseline.get("sequential"), baseline.get("static") or []


def finish_plot(fig, ax, series: list[dict], xs: list[int], path: Path) -> Path:
    from matplotlib.ticker import NullFormatter

    ax.set_xticks(xs, [str(x) for x in xs])
    ax.xaxis.set_minor_formatter(NullFormatter())  # the levels only, not 3x10^0
    ax.grid(True, which="both", alpha=0.3)
    if len(series) == 1:
        ax.legend()
    else:  # several voices: the legend beside the axes, not over the curves
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save_plot(fig, path)


def ttfa_plot(series: list[dict], title: str, path: Path) -> Path:
    fig, ax, xs = _figure(series)
    for s, x, sequential, static in _each(series):
        for key, style in (("p50", "o-"), ("p95", "s--")):
            ax.plot(x, [level["time_to_first_audio_s"][key] for level in s["levels"]], style,
                    label=f"tritone {s['label']}{key}")
        if sequential:
            ax.plot([r["concurrency"] for r in sequential["levels"]],
                    [r["time_to_first_audio_s"]["p95"] for r in sequential["levels"]], "^:",
                    label=f"{s['baseline_name']} one at a time {s['label']}p95")
        if static:
            ax.plot([r["concurrency"] for r in static], [r["time_to_first_audio_s"] for r in static], "v:",
                    label=f"{s['baseline_name']} static batch {s['label']}".rstrip())
    ax.set(xscale="log", yscale="log", xlabel="concurrent streams", ylabel="time to first audio (s)", title=title)
    return finish_plot(fig, ax, series, xs, path)


def throughput_plot(series: list[dict], title: str, path: Path) -> Path:
    fig, ax, xs = _figure(series)
    for s, x, sequential, static in _each(series):
        which = f", {s['label'].strip()}" if s["label"] else ""
        ax.plot(x, [level["audio_s_per_wall_s"] for level in s["levels"]], "o-", label=f"tritone (streaming){which}")
        if sequential:
            ax.plot(x, [sequential["audio_s_per_wall_s"]] * len(x), "^:",
                    label=f"{s['baseline_name']} one at a time{which}")
        if static:
            ax.plot([r["concurrency"] for r in static], [r["audio_s_per_wall_s"] for r in static], "v:",
                    label=f"{s['baseline_name']} static batch{which}")
    ax.plot(xs, xs, color="grey", linewidth=0.8, label="every stream in real time")
    ax.set(xscale="log", yscale="log", xlabel="concurrent streams", ylabel="audio seconds per wall second",
           title=title)
    return finish_plot(fig, ax, series, xs, path)


VOICE_TITLES = {"builtin": "built-in voice", "cloned": "cloned voice"}  # a speech suite's voice modes


def voice_readme(run: dict, title: str, decoding: str, rel, describe, baseline_name: str, plots: dict[str, str],
                 extra: list[str] = ()) -> list[str]:
    """A speech family's README block: its title and machine, its targets, each voice's levels (`describe(voice)`
    says what the voice was) with `baseline_name` one request at a time, `extra` lines, and its two plots
    (`plots`: alt text -> file)."""
    lines = [f"**{title}, {run['model']}**" + (" (smoke run: not a speed measurement)" if run.get("smoke") else "")
             + f", up to {run['config']['duration_s']:g} s per request ({decoding}), measured on {machine_line(run)}. "
               f"Full tables and plots: [{rel}/{MARKDOWN_FILE}]({rel}/{MARKDOWN_FILE}).",
             "", *target_table(run["targets"])]
    for mode, voice in (run.get("voices") or {}).items():
        seq = (voice.get("baseline") or {}).get("sequential")
        lines += ["", f"{VOICE_TITLES.get(mode, mode).capitalize()} ({describe(voice)}):", "",
                  *levels_table(voice["tritone"]["levels"], True)]
        if seq:
            lines += ["", f"{baseline_name} one request at a time: {num(seq['audio_s_per_wall_s'])} audio s per wall s."]
    lines += [*extra, "", " ".join(f"![{alt}]({rel}/{name})" for alt, name in plots.items()), ""]
    return lines


def voice_plots(run: dict, family: str, ttfa_path: Path, throughput_path: Path,
                baseline_name: str = "transformers") -> list[Path]:
    """A speech family's TTFA and throughput plots: one series per voice mode of `run["voices"]`."""
    title = f"{family}: {plot_title(run)}"
    series = [plot_series(voice["tritone"]["levels"], voice.get("baseline"), f"{VOICE_TITLES.get(mode, mode)} ",
                          baseline_name=baseline_name)
              for mode, voice in (run.get("voices") or {}).items()]
    if not series:
        return []
    return [ttfa_plot(series, title, ttfa_path), throughput_plot(series, title, throughput_path)]


def plot_title(results: dict) -> str:
    return f"{results['model']} on {results['machine'].get('cores', '?')} CPU cores"


def plot(results: dict, out_dir: Path) -> list[Path]:
    """The plots of every family the results hold."""
    import matplotlib

    matplotlib.use("Agg")
    out_dir = Path(out_dir)
    written = []
    for family in family_reports():
        run = family.find(results)
        if run:
            written += family.plots(run, out_dir)
    return written


def save_plot(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


# --- files -----------------------------------------------------------------------------------


def _read(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def write_results(results: dict, out_dir: Path) -> dict[str, Path]:
    """results.json, results.md and the plots into `out_dir`. `results` is one family's run (its
    comparisons and targets are added to it); the other families' runs are kept from the
    results.json already there when that is the same model's."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    existing = _read(out_dir / RESULTS_FILE)
    existing = existing if existing and existing.get("model") == results["model"] else None
    family = report_of(results)
    family.evaluate(results)
    if family.SECTION is None:  # the top level: the run itself, the others' sections kept
        merged = results
        for other in family_reports():
            if other.SECTION is not None and existing is not None and existing.get(other.SECTION):
                merged[other.SECTION] = existing[other.SECTION]
    else:
        merged = existing if existing is not None else {"schema": 1, "model": results["model"]}
        merged[family.SECTION] = results
    plots = plot(merged, out_dir)
    merged["files"] = sorted([RESULTS_FILE, MARKDOWN_FILE] + [p.name for p in plots])
    (out_dir / RESULTS_FILE).write_text(json.dumps(merged, indent=2, default=str) + "\n")
    (out_dir / MARKDOWN_FILE).write_text(markdown(merged))
    return {name: out_dir / name for name in merged["files"]}


# --- README ----------------------------------------------------------------------------------


def _load_all(results_root: Path) -> list[dict]:
    found = []
    for path in sorted(Path(results_root).glob(f"*/{RESULTS_FILE}")):
        results = _read(path)
        if results is None or "model" not in results:  # e.g. faults/results.json: not a model's run
            continue
        results["_dir"] = path.parent
        found.append(results)
    found.sort(key=lambda r: (r["model"] != "small-random", r["model"]))  # small-random first
    return found


def readme_block(results_root: Path, readme_dir: Path) -> str:
    """Every family's published runs (every model's), family after family in registry order."""
    runs = _load_all(results_root)
    lines = []
    for family in family_reports():
        found = [(family.find(r), r["_dir"]) for r in runs if family.find(r)]
        published = [(run, where) for run, where in found if not run.get("smoke")] or found  # smoke: while no full run
        for run, where in published:
            lines += family.readme(run, _relative(where, readme_dir))
    if not lines:
        return ("No results yet: run `python -m tritone.benchmarks run --model small-random` "
                "(and `python -m tritone.benchmarks readme`).")
    return "\n".join(lines).rstrip()


def _relative(directory, readme_dir):
    directory, readme_dir = Path(directory).resolve(), Path(readme_dir).resolve()
    return directory.relative_to(readme_dir) if directory.is_relative_to(readme_dir) else directory


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
