"""speech's part of the results (benchmarks/report.py loops over every family's): its run sits
under "speech" in results.json, its targets, its sections of results.md, its plots and its
README block."""

from __future__ import annotations

from pathlib import Path

from tritone.benchmarks.orpheus import LABEL
from tritone.benchmarks.report import (
    by_concurrency, compare_levels, compare_table, levels_table, machine_line, make_target, millis, num,
    perf_analyzer_section, ratio, served_share_targets, served_vs_decode_only, step_rows_table, streaming_targets,
    target_table, voice_plots, voice_readme, VOICE_TITLES,
)
from tritone.ensemble.orpheus.format import TOKENS_PER_FRAME

SECTION = LABEL  # results.json keeps its run under "speech"
PLOTS = {
    "speech_ttfa": "speech_ttfa_vs_concurrency.png",
    "speech_throughput": "speech_throughput_vs_concurrency.png",
}


def find(results: dict) -> dict | None:
    return results.get(SECTION) or None


def evaluate(speech: dict) -> None:
    """tritone against both baselines per voice and level, beside llama.cpp, and the targets."""
    for voice in (speech.get("voices") or {}).values():
        voice["comparisons"] = compare_levels(voice["tritone"]["levels"], voice.get("baseline"))
    llamacpp = speech.get("llamacpp") or {}
    for mode, theirs in (llamacpp.get("voices") or {}).items():
        ours = ((speech.get("voices") or {}).get(mode) or {}).get("tritone", {}).get("levels", [])
        theirs["comparisons"] = compare_llamacpp(ours, theirs["levels"], llamacpp.get("frame_s"))
    speech["targets"] = evaluate_speech_targets(speech)


def tritone_tokens_per_s(level: dict, frame_s: float | None) -> float | None:
    """tritone's answer tokens per wall second: its audio rate in frames, 7 tokens a frame."""
    audio = level.get("audio_s_per_wall_s")
    return audio / frame_s * TOKENS_PER_FRAME if audio is not None and frame_s else None


def compare_llamacpp(ours: list[dict], theirs: list[dict], frame_s: float | None) -> list[dict]:
    """Per level both systems ran: tritone's throughput over llama.cpp's, and llama.cpp's time to
    first audio p95 over tritone's (> 1: tritone first). Published side by side, no target."""
    by_n = by_concurrency(ours)
    rows = []
    for level in theirs:
        n = level["concurrency"]
        mine = by_n.get(n)
        if mine is None:
            continue
        rows.append({
            "concurrency": n,
            "tritone_tokens_per_s": tritone_tokens_per_s(mine, frame_s),
            "llamacpp_tokens_per_s": level.get("tokens_per_s"),
            "throughput_tritone_over_llamacpp": ratio(mine.get("audio_s_per_wall_s"), level.get("audio_s_per_wall_s")),
            "ttfa_p95_llamacpp_over_tritone": ratio(level["time_to_first_audio_s"]["p95"],
                                                    mine["time_to_first_audio_s"]["p95"]),
        })
    return rows


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
        targets += served_share_targets(served_share(speech), "built-in voice: ")
    stall = speech.get("prefill_stall") or {}
    targets.append(make_target(
        "prefill_stall", f"running streams' largest inter-chunk gap while a {num(stall.get('reference_s'))} s voice "
                         "prompt is prefilled <= 2x their largest gap before", stall.get("stall_ratio"), 2.0, False))
    return targets


def served_share(speech: dict) -> dict[int, float]:
    """The built-in voice's served throughput against the step timed alone (a cloned voice adds prefill)."""
    builtin = (speech.get("voices") or {}).get("builtin")
    rows = (speech.get("step_cost") or {}).get("engine") or []
    return served_vs_decode_only(builtin["tritone"]["levels"], rows) if builtin else {}


def step_lines(speech: dict) -> list[str]:
    rows = (speech.get("step_cost") or {}).get("engine")
    if not rows:
        return ["(step cost not measured)"]
    return [*step_rows_table(rows, served_share(speech), "rows"), "",
            f"The engine driven locally with built-in voices (no Triton, codec stubbed), LM {rows[0]['lm']}; "
            "served / decode-only sets the built-in voice's served audio s per wall s against N streams' decode-only "
            "ceiling."]




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
    lines += ["", "## Speech: cost of a decode step against the batch", "", *step_lines(speech)]
    lines += ["", "## Speech: llama.cpp beside tritone", "", *llamacpp_lines(speech, full=True)]
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
    return voice_plots(speech, "speech", out_dir / PLOTS["speech_ttfa"], out_dir / PLOTS["speech_throughput"])


def readme(speech: dict, rel) -> list[str]:
    extra = ["", *llamacpp_lines(speech, full=False)] if speech.get("llamacpp") else []
    stall = speech.get("prefill_stall") or {}
    if stall and not stall.get("error"):
        extra += ["", f"Prefill of a {num(stall['reference_s'])} s voice prompt ({stall['prefill_tokens']} tokens, "
                      f"first audio after {num(stall['long_prompt_ttfa_s'])} s) beside {stall['streams']} running "
                      f"streams: their largest inter-chunk gap {num(stall['gap_during_s']['max'])} s, against "
                      f"{num(stall['gap_before_s']['max'])} s before."]
    return voice_readme(speech, "Speech (`orpheus`)", "greedy", rel,
                        lambda voice: f"{voice['description']}, prompts of {_prompt_tokens(voice)} tokens",
                        "transformers", {"speech throughput": PLOTS["speech_throughput"],
                                         "speech ttfa": PLOTS["speech_ttfa"]}, extra)


def first_chunk_text(frames) -> str:
    """tritone's first chunk as the llama.cpp client cut it: one size, or the size at each level where they differ."""
    if not isinstance(frames, dict):
        return str(frames)
    if len(set(frames.values())) == 1:
        return str(next(iter(frames.values())))
    return ", ".join(f"{value} at {level} stream{'' if level == '1' else 's'}" for level, value in frames.items())


def llamacpp_lines(speech: dict, full: bool) -> list[str]:
    """llama.cpp's llama-server beside tritone per voice and level (`full`: with how it was run and
    what differs; else the README's table)."""
    llamacpp = speech.get("llamacpp")
    if not llamacpp:
        return ["(not measured in this run: `--llamacpp`)"] if full else []
    if llamacpp.get("status") != "ok":
        return [f"llama.cpp beside tritone: not measured: step `{llamacpp.get('step', '?')}` failed: "
                f"{llamacpp.get('reason', '?')}"]
    server, gguf = llamacpp.get("server") or {}, llamacpp.get("gguf") or {}
    build = llamacpp.get("build") or {}
    how = (f"`llama-server` (llama.cpp from llama-cpp-python {build.get('llama_cpp_python', '?')}'s source, "
           f"GGML_NATIVE) on the same weights as {gguf.get('type', '?')} GGUF, `--parallel {server.get('parallel')}` "
           f"with continuous batching, {server.get('threads')} threads, the same prompts as token ids, greedy "
           f"(samplers {' then '.join(server.get('samplers') or [])} 1) with the same repetition penalty over the "
           f"whole prompt and answer, `cache_prompt` on; SNAC decode in the client, time to first audio = first "
           f"{first_chunk_text(server.get('first_chunk_frames'))} frames' tokens + their decode")
    lines = [f"{how}." if full else f"Beside llama.cpp: {how}."]
    if full:
        lines += ["", "What differs: llama.cpp samples without the Orpheus grammar (its GBNF names single token ids, "
                      "not ranges), so on random weights most of its tokens are not the audio code of their frame "
                      "position; each is taken as one (folded into its position's codes) so the codec decodes as "
                      "much audio as the tokens paid for: the cost is measured, not the speech. It stops at "
                      "end_of_speech wherever it comes (no grammar holds it to a frame's end) or at the same "
                      "frame limit; tritone's streams stop where the grammar lets end_of_speech win. llama.cpp's "
                      "threads meet at a spinning barrier after every operation, so other work on the cores slows "
                      "it far more than its share (each level's 1-minute load average is in results.json): "
                      "measure it on a quiet machine."]
    frame_s = llamacpp.get("frame_s")
    for mode, theirs in (llamacpp.get("voices") or {}).items():
        ours = by_concurrency(((speech.get("voices") or {}).get(mode) or {}).get("tritone", {}).get("levels", []))
        lines += ["", f"{VOICE_TITLES.get(mode, mode).capitalize()}:", "",
                  "| Streams | tokens/s: tritone / llama.cpp | audio s/s: tritone / llama.cpp (tritone ÷ llama.cpp) "
                  "| TTFA p50 / p95 (ms): tritone | TTFA p50 / p95 (ms): llama.cpp | llama.cpp first token p50 / first-chunk decode p50 "
                  "(ms) | llama.cpp audio per request (s), stops, valid codes, prompt tokens cached |",
                  "|---|---|---|---|---|---|---|"]
        for level in theirs["levels"]:
            n = level["concurrency"]
            mine = ours.get(n) or {}
            t_ours, t_theirs = mine.get("time_to_first_audio_s") or {}, level["time_to_first_audio_s"]
            per_request = level.get("audio_s_per_request") or {}
            stops = ", ".join(f"{k} {v}" for k, v in (level.get("stop_types") or {}).items()) or "-"
            cached = f"{level.get('prompt_tokens_cached', 0)} of {level.get('prompt_tokens', 0)}"
            valid = level.get("grammar_valid")
            lines.append(
                f"| {n} | {num(tritone_tokens_per_s(mine, frame_s))} / {num(level.get('tokens_per_s'))} | "
                f"{num(mine.get('audio_s_per_wall_s'))} / {num(level.get('audio_s_per_wall_s'))} "
                f"({num(ratio(mine.get('audio_s_per_wall_s'), level.get('audio_s_per_wall_s')))}x) | "
                f"{millis(t_ours.get('p50'))} / {millis(t_ours.get('p95'))} | "
                f"{millis(t_theirs['p50'])} / {millis(t_theirs['p95'])} | "
                f"{millis(level['time_to_first_token_s']['p50'])} / {millis(level['first_chunk_decode_s']['p50'])} | "
                f"{num(per_request.get('min'))}-{num(per_request.get('max'))}, {stops}, "
                f"{'-' if valid is None else f'{valid:.0%}'}, {cached} |"
                + (f" errors: {'; '.join(level['errors'])[:120]}" if level.get("errors") else ""))
    return lines
