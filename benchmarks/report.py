"""Results: targets, comparisons, results.json, results.md, PNG plots and the README's block.

Everything here is pure over the results dict the runner builds (no server, no model), so a
results.json can be re-rendered: `python -m tritone.benchmarks readme` reads benchmarks/results/*/.

One results.json per model holds both families: music at the top level (as before the speech
family existed) and speech under "speech" (its own machine, commit, configuration, targets).
A run of one family keeps the other's section from the file it finds.
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
SPEECH_PLOTS = {
    "speech_ttfa": "speech_ttfa_vs_concurrency.png",
    "speech_throughput": "speech_throughput_vs_concurrency.png",
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
    return compare_levels(results["tritone"]["levels"], results.get("baseline"))


def compare_levels(tritone: list[dict], baseline: dict | None) -> list[dict]:
    baseline = baseline or {}
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


def _streaming_targets(levels: list[dict], baseline: dict | None, prefix: str = "", what: str = "") -> list[dict]:
    """The targets both families share, at TARGET_CONCURRENCY streams: throughput against both
    baselines, and how much the first audio's p95 grows from 1 stream."""
    n = TARGET_CONCURRENCY
    at_n = _by_concurrency(compare_levels(levels, baseline)).get(n, {})
    by_n = _by_concurrency(levels)
    p95_n = by_n.get(n, {}).get("time_to_first_audio_s", {}).get("p95")
    p95_1 = by_n.get(1, {}).get("time_to_first_audio_s", {}).get("p95")
    return [
        _target(f"{prefix}throughput_vs_sequential",
                f"{what}aggregate audio s per wall s at {n} streams >= 3x transformers one request at a time",
                at_n.get("throughput_vs_sequential"), 3.0, True),
        _target(f"{prefix}throughput_vs_static",
                f"{what}aggregate audio s per wall s at {n} streams above transformers statically batched "
                f"({n} prompts)",
                at_n.get("throughput_vs_static"), 1.0, True),
        _target(f"{prefix}ttfa_p95_growth", f"{what}time to first audio p95 at {n} streams <= 2x its value at 1 stream",
                _ratio(p95_n, p95_1), 2.0, False),
    ]


def evaluate_targets(results: dict) -> list[dict]:
    step = results.get("step_cost") or {}
    return [
        *_streaming_targets(results["tritone"]["levels"], results.get("baseline")),
        _target("decode_step_vs_eager", "a single stream's decode step no slower than transformers' eager step",
                step.get("engine_vs_eager_one_stream"), 1.0, False),
    ]


def evaluate_speech_targets(speech: dict) -> list[dict]:
    """Speech: the shared targets with the built-in voice, throughput with a cloned voice, and the
    running streams' largest gap while a 30 s voice prompt is prefilled."""
    voices = speech.get("voices") or {}
    targets = []
    if "builtin" in voices:
        targets += _streaming_targets(voices["builtin"]["tritone"]["levels"], voices["builtin"].get("baseline"),
                                      what="built-in voice: ")
    if "cloned" in voices:
        targets += _streaming_targets(voices["cloned"]["tritone"]["levels"], voices["cloned"].get("baseline"),
                                      "cloned_", "cloned voice: ")[:1]
    stall = speech.get("prefill_stall") or {}
    targets.append(_target(
        "prefill_stall", f"running streams' largest inter-chunk gap while a {_f(stall.get('reference_s'))} s voice "
                         "prompt is prefilled <= 2x their largest gap before", stall.get("stall_ratio"), 2.0, False))
    return targets


# --- markdown --------------------------------------------------------------------------------


def _f(value, digits: int = 3, suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 10 ** digits:  # whole numbers, not 1.75e+03
            return f"{value:.0f}{suffix}"
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
    return levels_table(results["tritone"]["levels"])


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
            f"{_ms(t['p50'])} / {_ms(t['p95'])} / {_ms(t['p99'])} | {_f(r['p50'])} / {_f(r['p95'])} | "
            f"{u['chunks']}, {u['streams']}, {_f(u['stall_s'])} | {_f(level['audio_s_per_wall_s'])} | "
            f"{_f(level['decode']['occupancy'])} |"
            + (f" {_f(per_request.get('min'))}-{_f(per_request.get('max'))} |" if audio_column else ""))
    return lines


def baseline_table(results: dict) -> list[str]:
    return compare_table(results["tritone"]["levels"], results.get("baseline"))


def compare_table(levels: list[dict], baseline: dict | None) -> list[str]:
    if not baseline:
        return ["(baselines not run)"]
    seq = baseline["sequential"]
    queued = _by_concurrency(seq["levels"])
    static = _by_concurrency(baseline["static"])
    compare = _by_concurrency(compare_levels(levels, baseline))
    lines = [
        f"One at a time: {seq['requests']} requests, {_f(sum(seq['service_s']) / len(seq['service_s']))} s each, "
        f"**{_f(seq['audio_s_per_wall_s'])} audio s per wall s**. Time to first audio is the whole latency "
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
                         f"{_f(run.get('throughput_infer_per_s'))} | {_f(latency.get('p50'))} / {_f(latency.get('p95'))} | "
                         f"{_f(run.get('server_avg_batch_size'))} | {_f(first)} | {_f(run.get('audio_s_per_s'))} |")
    return lines


def has_music(results: dict) -> bool:
    return "tritone" in results


def markdown(results: dict) -> str:
    """results.md: the music run (when the file has one), then the speech run (when it has one)."""
    lines = music_markdown(results) if has_music(results) else []
    if results.get("speech"):
        lines += speech_markdown(results["speech"])
    return "\n".join(lines)


def music_markdown(results: dict) -> list[str]:
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


VOICE_TITLES = {"builtin": "built-in voice", "cloned": "cloned voice"}


def _prompt_tokens(voice: dict) -> str:
    tokens = voice.get("prompt_tokens") or {}
    return f"{_f(tokens.get('min'))}-{_f(tokens.get('max'))}"


def speech_workload_line(speech: dict) -> str:
    cfg = speech["config"]
    server = speech.get("server", {})
    parameters = server.get("orpheus_parameters") or {}
    voices = "; ".join(
        f"{VOICE_TITLES.get(mode, mode)}: {voice['description']}, prompts of {_prompt_tokens(voice)} tokens"
        for mode, voice in (speech.get("voices") or {}).items())
    return (f"Workload: up to {cfg['duration_s']:g} s of speech per request (max_duration; speech may end sooner "
            f"at end_of_speech, so the tables report the audio produced), sentences cycled from a fixed list of "
            f"{len(cfg['sentences'])}, greedy decoding with repetition penalty {cfg['repetition_penalty']:g} under the "
            f"Orpheus grammar, the same for every system ({voices}); {cfg['threads']} threads. Server: `orpheus` "
            f"max_slots {server.get('max_slots', '?')}, max_queue {server.get('max_queue', '?')}, prefill_chunk "
            f"{parameters.get('prefill_chunk', '?')}, step_tokens {parameters.get('step_tokens', '-')}, chunks "
            f"of {parameters.get('first_frames', '?')} frames growing to {parameters.get('max_frames', '?')}.")


def stall_lines(stall: dict | None) -> list[str]:
    if not stall:
        return ["(not measured)"]
    if stall.get("error"):
        return [f"(failed: {stall['error']})"]
    gap_before, gap_during = stall["gap_before_s"], stall["gap_during_s"]
    steps = stall.get("ms_per_step") or {}
    return [
        f"{stall['streams']} streams ({stall['runner_voice']}) were running at steady chunk size "
        f"({_f(stall['steady_chunk_s'])} s of audio per chunk) when a request cloning a {_f(stall['reference_s'])} s "
        f"voice arrived: {stall['prefill_tokens']} prompt tokens, prefilled a chunk per step beside their "
        f"decoding. Its first audio came **{_f(stall['long_prompt_ttfa_s'])} s** after it was sent (the prefill, "
        f"then its first chunk); meanwhile they received {stall['chunks_during']} chunks.",
        "",
        "| Running streams' inter-chunk gaps | largest (s) | median (s) | gaps | ms per LM step |",
        "|---|---|---|---|---|",
        f"| before the long prompt (steady chunks) | {_f(gap_before['max'])} | {_f(gap_before['p50'])} | "
        f"{gap_before['count']} | {_f(steps.get('before'))} |",
        f"| spanning its prefill | **{_f(gap_during['max'])}** | {_f(gap_during['p50'])} | {gap_during['count']} | "
        f"{_f(steps.get('during'))} |",
        "",
        f"Largest gap during / before: **{_f(stall['stall_ratio'])}x**. A prefill in one call would hold every "
        f"running stream for the whole prefill instead.",
    ]


def speech_markdown(speech: dict) -> list[str]:
    lines = [
        f"# Speech (`orpheus`): {speech['model']}" + (" (smoke run: checks the recipes run, not speed)"
                                                      if speech.get("smoke") else ""),
        "",
        f"Machine: {machine_line(speech)}.",
        "",
        speech_workload_line(speech),
        "",
        "## Speech targets",
        "",
        *target_table(speech["targets"]),
    ]
    for mode, voice in (speech.get("voices") or {}).items():
        same = voice.get("same_codes") or {}
        lines += [
            "",
            f"## Speech, {VOICE_TITLES.get(mode, mode)}: tritone streaming over gRPC",
            "",
            *levels_table(voice["tritone"]["levels"], audio_column=True),
            "",
            f"## Speech, {VOICE_TITLES.get(mode, mode)}: against transformers generate() + SNAC decode",
            "",
            *compare_table(voice["tritone"]["levels"], voice.get("baseline")),
        ]
        if same:
            lines += ["", f"Same output: tritone's streamed codes equal generate()'s for {same['identical']} of "
                          f"{same['requests']} requests (greedy; ONNX Runtime and torch round differently, so "
                          f"near-ties may resolve apart)."]
    lines += [
        "",
        "## Speech: a long voice prompt beside running streams (chunked prefill)",
        "",
        *stall_lines(speech.get("prefill_stall")),
        "",
        "## Speech: perf_analyzer",
        "",
        *perf_analyzer_section(speech),
        "",
        "## Speech plots",
        "",
        *[f"![{key}]({name})" for key, name in SPEECH_PLOTS.items()],
        "",
    ]
    return lines


# --- plots -----------------------------------------------------------------------------------


def _series(levels: list[dict], baseline: dict | None, label: str = "", style: str = "") -> dict:
    return {"levels": levels, "baseline": baseline or {}, "label": label, "style": style}


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


def _finish(fig, ax, series: list[dict], xs: list[int], path: Path) -> Path:
    from matplotlib.ticker import NullFormatter

    ax.set_xticks(xs, [str(x) for x in xs])
    ax.xaxis.set_minor_formatter(NullFormatter())  # the levels only, not 3x10^0
    ax.grid(True, which="both", alpha=0.3)
    if len(series) == 1:
        ax.legend()
    else:  # several voices: the legend beside the axes, not over the curves
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def _ttfa_plot(series: list[dict], title: str, path: Path) -> Path:
    fig, ax, xs = _figure(series)
    for s, x, sequential, static in _each(series):
        for key, style in (("p50", "o-"), ("p95", "s--")):
            ax.plot(x, [level["time_to_first_audio_s"][key] for level in s["levels"]], style,
                    label=f"tritone {s['label']}{key}")
        if sequential:
            ax.plot([r["concurrency"] for r in sequential["levels"]],
                    [r["time_to_first_audio_s"]["p95"] for r in sequential["levels"]], "^:",
                    label=f"transformers one at a time {s['label']}p95")
        if static:
            ax.plot([r["concurrency"] for r in static], [r["time_to_first_audio_s"] for r in static], "v:",
                    label=f"transformers static batch {s['label']}".rstrip())
    ax.set(xscale="log", yscale="log", xlabel="concurrent streams", ylabel="time to first audio (s)", title=title)
    return _finish(fig, ax, series, xs, path)


def _throughput_plot(series: list[dict], title: str, path: Path) -> Path:
    fig, ax, xs = _figure(series)
    for s, x, sequential, static in _each(series):
        which = f", {s['label'].strip()}" if s["label"] else ""
        ax.plot(x, [level["audio_s_per_wall_s"] for level in s["levels"]], "o-", label=f"tritone (streaming){which}")
        if sequential:
            ax.plot(x, [sequential["audio_s_per_wall_s"]] * len(x), "^:", label=f"transformers one at a time{which}")
        if static:
            ax.plot([r["concurrency"] for r in static], [r["audio_s_per_wall_s"] for r in static], "v:",
                    label=f"transformers static batch{which}")
    ax.plot(xs, xs, color="grey", linewidth=0.8, label="every stream in real time")
    ax.set(xscale="log", yscale="log", xlabel="concurrent streams", ylabel="audio seconds per wall second",
           title=title)
    return _finish(fig, ax, series, xs, path)


def _title(results: dict) -> str:
    return f"{results['model']} on {results['machine'].get('cores', '?')} CPU cores"


def plot(results: dict, out_dir: Path) -> list[Path]:
    """The plots of every family the results hold."""
    import matplotlib

    matplotlib.use("Agg")
    out_dir = Path(out_dir)
    written = []
    if has_music(results):
        written += music_plots(results, out_dir)
    if results.get("speech"):
        written += speech_plots(results["speech"], out_dir)
    return written


def music_plots(results: dict, out_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    title = _title(results)
    series = [_series(results["tritone"]["levels"], results.get("baseline"))]
    written = [_ttfa_plot(series, title, out_dir / PLOTS["ttfa"]),
               _throughput_plot(series, title, out_dir / PLOTS["throughput"])]
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
        written.append(_finish(fig, ax, [{}], ns, out_dir / PLOTS["step_cost"]))
    return written


def speech_plots(speech: dict, out_dir: Path) -> list[Path]:
    title = f"speech: {_title(speech)}"
    series = [_series(voice["tritone"]["levels"], voice.get("baseline"), f"{VOICE_TITLES.get(mode, mode)} ")
              for mode, voice in (speech.get("voices") or {}).items()]
    if not series:
        return []
    return [_ttfa_plot(series, title, out_dir / SPEECH_PLOTS["speech_ttfa"]),
            _throughput_plot(series, title, out_dir / SPEECH_PLOTS["speech_throughput"])]


def _save(fig, path: Path) -> Path:
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
    comparisons and targets are added to it); the other family's section is kept from the
    results.json already there when that is the same model's."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    existing = _read(out_dir / RESULTS_FILE)
    existing = existing if existing and existing.get("model") == results["model"] else None
    if results.get("family") == "speech":
        for voice in (results.get("voices") or {}).values():
            voice["comparisons"] = compare_levels(voice["tritone"]["levels"], voice.get("baseline"))
        results["targets"] = evaluate_speech_targets(results)
        merged = existing if existing is not None else {"schema": 1, "model": results["model"]}
        merged["speech"] = results
    else:
        results["comparisons"] = comparisons(results)
        results["targets"] = evaluate_targets(results)
        merged = results
        if existing is not None and existing.get("speech"):
            merged["speech"] = existing["speech"]
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
        if results is None:
            continue
        results["_dir"] = path.parent
        found.append(results)
    found.sort(key=lambda r: (r["model"] != "small-random", r["model"]))  # small-random first
    return found


def _published(sections: list[dict]) -> list[dict]:
    """Full runs; smoke runs only while there is none."""
    return [s for s in sections if not s.get("smoke")] or sections


def readme_block(results_root: Path, readme_dir: Path) -> str:
    runs = _load_all(results_root)
    music = _published([r for r in runs if has_music(r)])
    speech = _published([r for r in runs if r.get("speech")])
    if not music and not speech:
        return ("No results yet: run `python -m tritone.benchmarks run --model small-random` "
                "(and `python -m tritone.benchmarks readme`).")
    lines = []
    for results in music:
        rel = _relative(results["_dir"], readme_dir)
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
    for results in speech:
        lines += speech_readme(results["speech"], _relative(results["_dir"], readme_dir))
    return "\n".join(lines).rstrip()


def speech_readme(speech: dict, rel) -> list[str]:
    cfg = speech["config"]
    lines = [
        f"**Speech (`orpheus`), {speech['model']}**" + (" (smoke run: not a speed measurement)"
                                                        if speech.get("smoke") else "")
        + f", up to {cfg['duration_s']:g} s per request (greedy), measured on {machine_line(speech)}. "
          f"Full tables and plots: [{rel}/{MARKDOWN_FILE}]({rel}/{MARKDOWN_FILE}).",
        "",
        *target_table(speech["targets"]),
    ]
    for mode, voice in (speech.get("voices") or {}).items():
        seq = (voice.get("baseline") or {}).get("sequential")
        lines += ["", f"{VOICE_TITLES.get(mode, mode).capitalize()} ({voice['description']}, prompts of "
                      f"{_prompt_tokens(voice)} tokens):", "", *levels_table(voice["tritone"]["levels"], True)]
        if seq:
            lines += ["", f"transformers one request at a time: {_f(seq['audio_s_per_wall_s'])} audio s per wall s."]
    stall = speech.get("prefill_stall") or {}
    if stall and not stall.get("error"):
        lines += ["", f"Prefill of a {_f(stall['reference_s'])} s voice prompt ({stall['prefill_tokens']} tokens, "
                      f"first audio after {_f(stall['long_prompt_ttfa_s'])} s) beside {stall['streams']} running "
                      f"streams: their largest inter-chunk gap {_f(stall['gap_during_s']['max'])} s, against "
                      f"{_f(stall['gap_before_s']['max'])} s before."]
    lines += ["", f"![speech throughput]({rel}/{SPEECH_PLOTS['speech_throughput']}) "
                  f"![speech ttfa]({rel}/{SPEECH_PLOTS['speech_ttfa']})", ""]
    return lines


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
