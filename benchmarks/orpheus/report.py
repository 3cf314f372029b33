"""speech's part of the results (benchmarks/report.py loops over every family's): its run sits
under "speech" in results.json, its targets, its sections of results.md, its plots and its
README block."""

from __future__ import annotations

from pathlib import Path

from tritone.benchmarks.orpheus import LABEL
from tritone.benchmarks.report import (
    MARKDOWN_FILE, compare_levels, compare_table, levels_table, machine_line, make_target, num,
    perf_analyzer_section, plot_series, plot_title, streaming_targets, target_table, throughput_plot, ttfa_plot,
)

SECTION = LABEL  # results.json keeps its run under "speech"
PLOTS = {
    "speech_ttfa": "speech_ttfa_vs_concurrency.png",
    "speech_throughput": "speech_throughput_vs_concurrency.png",
}


def find(results: dict) -> dict | None:
    return results.get(SECTION) or None


def evaluate(speech: dict) -> None:
    """tritone against both baselines per voice and level, and the targets."""
    for voice in (speech.get("voices") or {}).values():
        voice["comparisons"] = compare_levels(voice["tritone"]["levels"], voice.get("baseline"))
    speech["targets"] = evaluate_speech_targets(speech)


def evaluate_speech_targets(speech: dict) -> list[dict]:
    """Speech: the shared targets with the built-in voice, throughput with a cloned voice, and the
    running streams' largest gap while a 30 s voice prompt is prefilled."""
    voices = speech.get("voices") or {}
    targets = []
    if "builtin" in voices:
        targets += streaming_targets(voices["builtin"]["tritone"]["levels"], voices["builtin"].get("baseline"),
                                     what="built-in voice: ")
    if "cloned" in voices:
        targets += streaming_targets(voices["cloned"]["tritone"]["levels"], voices["cloned"].get("baseline"),
                                     "cloned_", "cloned voice: ")[:1]
    stall = speech.get("prefill_stall") or {}
    targets.append(make_target(
        "prefill_stall", f"running streams' largest inter-chunk gap while a {num(stall.get('reference_s'))} s voice "
                         "prompt is prefilled <= 2x their largest gap before", stall.get("stall_ratio"), 2.0, False))
    return targets


VOICE_TITLES = {"builtin": "built-in voice", "cloned": "cloned voice"}


def _prompt_tokens(voice: dict) -> str:
    tokens = voice.get("prompt_tokens") or {}
    return f"{num(tokens.get('min'))}-{num(tokens.get('max'))}"


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
            f"of {parameters.get('first_frames', '?')} frames growing to {parameters.get('max_chunk_frames', '?')}.")


def stall_lines(stall: dict | None) -> list[str]:
    if not stall:
        return ["(not measured)"]
    if stall.get("error"):
        return [f"(failed: {stall['error']})"]
    gap_before, gap_during = stall["gap_before_s"], stall["gap_during_s"]
    steps = stall.get("ms_per_step") or {}
    return [
        f"{stall['streams']} streams ({stall['runner_voice']}) were running at steady chunk size "
        f"({num(stall['steady_chunk_s'])} s of audio per chunk) when a request cloning a {num(stall['reference_s'])} s "
        f"voice arrived: {stall['prefill_tokens']} prompt tokens, prefilled a chunk per step beside their "
        f"decoding. Its first audio came **{num(stall['long_prompt_ttfa_s'])} s** after it was sent (the prefill, "
        f"then its first chunk); meanwhile they received {stall['chunks_during']} chunks.",
        "",
        "| Running streams' inter-chunk gaps | largest (s) | median (s) | gaps | ms per LM step |",
        "|---|---|---|---|---|",
        f"| before the long prompt (steady chunks) | {num(gap_before['max'])} | {num(gap_before['p50'])} | "
        f"{gap_before['count']} | {num(steps.get('before'))} |",
        f"| spanning its prefill | **{num(gap_during['max'])}** | {num(gap_during['p50'])} | {gap_during['count']} | "
        f"{num(steps.get('during'))} |",
        "",
        f"Largest gap during / before: **{num(stall['stall_ratio'])}x**. A prefill in one call would hold every "
        f"running stream for the whole prefill instead.",
    ]


def markdown(speech: dict) -> list[str]:
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
        *[f"![{key}]({name})" for key, name in PLOTS.items()],
        "",
    ]
    return lines


def plots(speech: dict, out_dir: Path) -> list[Path]:
    title = f"speech: {plot_title(speech)}"
    series = [plot_series(voice["tritone"]["levels"], voice.get("baseline"), f"{VOICE_TITLES.get(mode, mode)} ")
              for mode, voice in (speech.get("voices") or {}).items()]
    if not series:
        return []
    return [ttfa_plot(series, title, out_dir / PLOTS["speech_ttfa"]),
            throughput_plot(series, title, out_dir / PLOTS["speech_throughput"])]


def readme(speech: dict, rel) -> list[str]:
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
            lines += ["", f"transformers one request at a time: {num(seq['audio_s_per_wall_s'])} audio s per wall s."]
    stall = speech.get("prefill_stall") or {}
    if stall and not stall.get("error"):
        lines += ["", f"Prefill of a {num(stall['reference_s'])} s voice prompt ({stall['prefill_tokens']} tokens, "
                      f"first audio after {num(stall['long_prompt_ttfa_s'])} s) beside {stall['streams']} running "
                      f"streams: their largest inter-chunk gap {num(stall['gap_during_s']['max'])} s, against "
                      f"{num(stall['gap_before_s']['max'])} s before."]
    lines += ["", f"![speech throughput]({rel}/{PLOTS['speech_throughput']}) "
                  f"![speech ttfa]({rel}/{PLOTS['speech_ttfa']})", ""]
    return lines
