"""chatterbox's part of the results (benchmarks/report.py loops over every family's): its run sits
under "chatterbox" in results.json, its targets, its section of results.md, its plots and its
README block.

Targets, per voice (built-in, then cloned with names prefixed `cloned_`), against the package's
ChatterboxTTS.generate one request at a time on the same weights in the same run:
- one stream's audio s per wall s >= the reference's one at a time;
- 8 streams' audio s per wall s >= 3x the reference's one at a time;
- time to first audio p95 at 8 streams <= 2x its value at 1 stream.
"""

from __future__ import annotations

from pathlib import Path

from tritone.benchmarks.chatterbox import LABEL
from tritone.benchmarks.report import (
    TARGET_CONCURRENCY, by_concurrency, compare_levels, levels_table, machine_line, make_target,
    millis, num, perf_analyzer_section, ratio, target_table, voice_plots, voice_readme, VOICE_TITLES,
)

SECTION = LABEL  # results.json keeps its run under "chatterbox"
PLOTS = {
    "chatterbox_ttfa": "chatterbox_ttfa_vs_concurrency.png",
    "chatterbox_throughput": "chatterbox_throughput_vs_concurrency.png",
}
PREFIXES = {"builtin": "", "cloned": "cloned_"}
REFERENCE = "chatterbox-tts"


def find(results: dict) -> dict | None:
    return results.get(SECTION) or None


def evaluate(run: dict) -> None:
    """tritone against the reference one at a time per voice and level, and the targets."""
    for voice in (run.get("voices") or {}).values():
        voice["comparisons"] = compare_levels(voice["tritone"]["levels"], voice.get("baseline"))
    run["targets"] = targets(run)


def voice_targets(levels: list[dict], baseline: dict | None, prefix: str = "", what: str = "") -> list[dict]:
    n = TARGET_CONCURRENCY
    compared = by_concurrency(compare_levels(levels, baseline))
    by_n = by_concurrency(levels)
    p95 = {k: by_n.get(k, {}).get("time_to_first_audio_s", {}).get("p95") for k in (1, n)}
    return [
        make_target(f"{prefix}single_stream_vs_sequential",
                    f"{what}audio s per wall s of one stream >= {REFERENCE} generate() one request at a time",
                    compared.get(1, {}).get("throughput_vs_sequential"), 1.0, True),
        make_target(f"{prefix}throughput_vs_sequential",
                    f"{what}aggregate audio s per wall s at {n} streams >= 3x {REFERENCE} generate() one request "
                    f"at a time", compared.get(n, {}).get("throughput_vs_sequential"), 3.0, True),
        make_target(f"{prefix}ttfa_p95_growth",
                    f"{what}time to first audio p95 at {n} streams <= 2x its value at 1 stream",
                    ratio(p95[n], p95[1]), 2.0, False),
    ]


def targets(run: dict) -> list[dict]:
    found = []
    for mode, voice in (run.get("voices") or {}).items():
        found += voice_targets(voice["tritone"]["levels"], voice.get("baseline"), PREFIXES.get(mode, f"{mode}_"),
                               f"{VOICE_TITLES.get(mode, mode)}: ")
    return found


def compare_lines(levels: list[dict], baseline: dict | None) -> list[str]:
    if not baseline:
        return ["(reference not run)"]
    seq = baseline["sequential"]
    queued = by_concurrency(seq["levels"])
    compared = by_concurrency(compare_levels(levels, baseline))
    audio = seq.get("audio_s_per_request") or []
    lines = [
        f"One at a time: {seq['requests']} requests, {num(sum(seq['service_s']) / len(seq['service_s']))} s each, "
        f"{num(min(audio, default=None))}-{num(max(audio, default=None))} s of audio each (at most "
        f"{seq.get('token_limit', '?')} speech tokens, as served), **{num(seq['audio_s_per_wall_s'])} audio s per "
        f"wall s**. Nothing streams: time to first audio is the whole latency, queued behind the clients before."
        + (f" The clip's conditioning (prepare_conditionals) took {num(seq['clip_encode_s'])} s, once, in the warm-up "
           f"(both systems measure with it cached)." if seq.get("clip_encode_s") is not None else ""),
        "",
        f"| Streams | tritone audio s/s | {REFERENCE} one at a time audio s/s (tritone ÷ it) | "
        f"TTFA p95 (ms): tritone / {REFERENCE} queued |",
        "|---|---|---|---|",
    ]
    for level in levels:
        n = level["concurrency"]
        lines.append(
            f"| {n} | {num(level['audio_s_per_wall_s'])} | {num(seq['audio_s_per_wall_s'])} "
            f"({num(compared[n]['throughput_vs_sequential'])}x) | {millis(level['time_to_first_audio_s']['p95'])} / "
            f"{millis(queued.get(n, {}).get('time_to_first_audio_s', {}).get('p95'))} |")
    return lines


def workload_line(run: dict) -> str:
    cfg = run["config"]
    server = run.get("server", {})
    parameters = server.get("chatterbox_parameters") or {}
    sampling = ", ".join(f"{k} {v:g}" for k, v in (cfg.get("sampling") or {}).items())
    voices = "; ".join(f"{VOICE_TITLES.get(mode, mode)}: {voice['description']}"
                       for mode, voice in (run.get("voices") or {}).items())
    return (f"Workload: up to {cfg['duration_s']:g} s of speech per request (max_duration, in speech tokens at 25 a "
            f"second, the same cap for {REFERENCE}; speech may stop sooner, so the tables report the audio produced), "
            f"texts cycled from a fixed list of {len(cfg['sentences'])}, sampled with the package's defaults "
            f"({sampling}), request i seeded {cfg['seed']} + i on both systems ({voices}); {cfg['threads']} "
            f"threads. Server: `chatterbox` max_slots {server.get('max_slots', '?')}, max_queue "
            f"{server.get('max_queue', '?')}, chunks of {parameters.get('first_frames', '?')} tokens growing to "
            f"{parameters.get('max_chunk_frames', '?')}.")


def markdown(run: dict) -> list[str]:
    lines = [
        f"# Chatterbox (`chatterbox`): {run['model']}" + (" (smoke run: checks the suite runs, not speed)"
                                                          if run.get("smoke") else ""),
        "",
        f"Machine: {machine_line(run)}.",
        "",
        workload_line(run),
        "",
        "## Chatterbox targets",
        "",
        *target_table(run["targets"]),
    ]
    for mode, voice in (run.get("voices") or {}).items():
        title = VOICE_TITLES.get(mode, mode)
        lines += ["", f"## Chatterbox, {title}: tritone streaming over gRPC", "",
                  *levels_table(voice["tritone"]["levels"], audio_column=True), "",
                  f"## Chatterbox, {title}: against {REFERENCE} ChatterboxTTS.generate() one at a time", "",
                  *compare_lines(voice["tritone"]["levels"], voice.get("baseline"))]
    lines += ["", "## Chatterbox: perf_analyzer", "", *perf_analyzer_section(run), "",
              "## Chatterbox plots", "", *[f"![{key}]({name})" for key, name in PLOTS.items()], ""]
    return lines


def plots(run: dict, out_dir: Path) -> list[Path]:
    return voice_plots(run, "chatterbox", out_dir / PLOTS["chatterbox_ttfa"], out_dir / PLOTS["chatterbox_throughput"],
                       baseline_name=REFERENCE)


def readme(run: dict, rel) -> list[str]:
    return voice_readme(run, "Chatterbox (`chatterbox`)", "sampled", rel, lambda voice: voice["description"],
                        f"{REFERENCE} generate()", {"chatterbox throughput": PLOTS["chatterbox_throughput"],
                                                    "chatterbox ttfa": PLOTS["chatterbox_ttfa"]})
