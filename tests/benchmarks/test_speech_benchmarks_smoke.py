"""The speech benchmark's smoke configuration on tiny-random against the session's real
tritonserver: perf_analyzer over the speech recipes, both voices streamed at every level, the
prefill stall, both transformers baselines, the files (CI checks that it runs, not speed)."""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path

import pytest

from tritone.benchmarks import report
from tritone.benchmarks.__main__ import main
from tritone.benchmarks.musicgen import report as music_report
from tritone.benchmarks.orpheus import report as speech_report
from tritone.benchmarks.orpheus.suite import Config as SpeechBenchConfig, run as run_speech_suite

pytestmark = pytest.mark.integration

# The session server's orpheus has 4 decode slots and 4 waiting places: 8 is the most it takes at once.
LEVELS = [1, 2, 4, 8]
FRAME_S = 2048 / 24000
PUBLISHED_MUSIC = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "small-random" / report.RESULTS_FILE


@pytest.fixture(scope="module")
def smoke(triton_stack, tiny_model_repository, tmp_path_factory):
    out = tmp_path_factory.mktemp("speech-bench") / "tiny-random"
    config = SpeechBenchConfig.create("tiny-random", smoke=True, concurrency=LEVELS)
    started = time.perf_counter()
    results = run_speech_suite(config, tiny_model_repository, triton_stack.grpc_url, triton_stack.metrics_url,
                               out)
    return out, results, time.perf_counter() - started


def test_smoke_run_writes_the_speech_files(smoke):
    out, results, wall = smoke
    assert wall < 90, f"the speech smoke run took {wall:.0f} s"
    for name in (report.RESULTS_FILE, report.MARKDOWN_FILE, *speech_report.PLOTS.values()):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    written = json.loads((out / report.RESULTS_FILE).read_text())
    assert written["model"] == "tiny-random" and "tritone" not in written  # no music run in this directory
    speech = written["speech"]
    for key in ("family", "model", "smoke", "machine", "git", "config", "server", "perf_analyzer", "voices",
                "prefill_stall", "targets", "phases_s"):
        assert key in speech, key
    assert speech["family"] == "speech" and speech["smoke"] is True
    assert set(speech["voices"]) == {"builtin", "cloned"}
    for phase in ("perf_analyzer", "tritone_load", "prefill_stall", "engine_step_cost", "transformers_baselines",
                  "total"):
        assert speech["phases_s"][phase] >= 0, phase
    markdown = (out / report.MARKDOWN_FILE).read_text()
    for heading in ("# Speech (`orpheus`): tiny-random", "## Speech, built-in voice: tritone streaming over gRPC",
                    "## Speech, cloned voice: against transformers generate() + SNAC decode",
                    "## Speech: a long voice prompt beside running streams", "## Speech: perf_analyzer",
                    "## Speech: cost of a decode step against the batch"):
        assert heading in markdown, heading


@pytest.mark.parametrize("mode", ["builtin", "cloned"])
def test_both_voices_stream_at_every_level(smoke, mode):
    _, results, _ = smoke
    voice = results["voices"][mode]
    levels = voice["tritone"]["levels"]
    assert [level["concurrency"] for level in levels] == LEVELS
    duration = results["config"]["duration_s"]
    for level in levels:
        n = level["concurrency"]
        assert level["errors"] == [] and level["completed"] == level["requests"] >= max(n, 2)
        ttfa = level["time_to_first_audio_s"]
        assert 0 < ttfa["p50"] <= ttfa["p95"] <= ttfa["max"]
        rtf = level["real_time_factor"]
        assert all(math.isfinite(rtf[key]) and rtf[key] > 0 for key in ("p50", "p95", "max"))
        assert 0 < level["audio_s_per_request"]["min"] <= level["audio_s_per_request"]["max"] <= duration + 1e-6
        assert level["audio_s_per_wall_s"] > 0 and level["chunks"] >= level["requests"]
        assert 1 <= level["decode"]["occupancy"] <= min(n, 4) + 1e-9
    assert levels[-1]["decode"]["occupancy"] > 1  # 8 streams share decode steps
    tokens = voice["prompt_tokens"]
    # a cloned voice puts ~10 s of reference codes (7 tokens a frame) in every prompt
    assert tokens["min"] > 7 * 100 if mode == "cloned" else 0 < tokens["max"] < 100


@pytest.mark.parametrize("mode", ["builtin", "cloned"])
def test_baselines_speak_the_same_requests(smoke, mode):
    _, results, _ = smoke
    voice = results["voices"][mode]
    baseline = voice["baseline"]
    sequential = baseline["sequential"]
    assert sequential["requests"] == 2 and sequential["audio_s_per_wall_s"] > 0
    assert all(s > 0 for s in sequential["service_s"]) and len(sequential["frames"]) == 2
    assert [r["concurrency"] for r in sequential["levels"]] == LEVELS
    assert [r["concurrency"] for r in baseline["static"]] == LEVELS
    for row in baseline["static"]:
        assert row["audio_s_per_wall_s"] > 0 and row["time_to_first_audio_s"] == row["wall_s"] > 0
        assert len(row["frames"]) == row["concurrency"]
    for row in voice["comparisons"]:
        for key in ("throughput_vs_sequential", "throughput_vs_static", "ttfa_p95_speedup_vs_sequential",
                    "ttfa_p95_speedup_vs_static"):
            assert row[key] is not None and row[key] > 0, (row["concurrency"], key)
    # greedy on the same weights: what tritone streamed is what generate() says
    assert voice["same_codes"]["requests"] == 2
    assert voice["same_codes"]["identical"] == 2, voice["same_codes"]
    first = results["voices"][mode]["tritone"]["levels"][0]
    assert first["audio_s"] == pytest.approx(sum(sequential["frames"]) * FRAME_S)  # the same audio, both systems


def test_a_long_voice_prompt_is_prefilled_beside_running_streams(smoke):
    _, results, _ = smoke
    stall = results["prefill_stall"]
    assert "error" not in stall, stall
    assert stall["streams"] == 2 and stall["errors"] == []
    assert stall["reference_s"] == pytest.approx(30.0, abs=0.1) and stall["prefill_tokens"] >= 2450
    assert stall["long_prompt_ttfa_s"] > 0
    assert stall["gap_before_s"]["count"] >= 2 and stall["gap_before_s"]["max"] > 0
    assert stall["gap_during_s"]["count"] >= 2 and stall["gap_during_s"]["max"] > 0
    assert math.isfinite(stall["stall_ratio"]) and stall["stall_ratio"] > 0
    assert stall["ms_per_step"]["before"] > 0 and stall["ms_per_step"]["during"] > 0


def test_perf_analyzer_ran_the_speech_recipes(smoke):
    _, results, _ = smoke
    pa = results["perf_analyzer"]
    assert pa["status"] == "ok", pa
    suite = pa["result"]
    assert suite["errors"] == [] and set(suite["recipes"]) == {"orpheus", "snac_decoder", "snac_encoder"}
    for name, recipe in suite["recipes"].items():
        assert {(run["batching"], run["concurrency"]) for run in recipe["runs"]} == {("rendered", 1), ("rendered", 2)}
        for run in recipe["runs"]:
            assert run["throughput_infer_per_s"] > 0 and run["latency_ms"]["p50"] > 0, (name, run)
    for run in suite["recipes"]["orpheus"]["runs"]:
        assert run["requests"] > 0 and run["first_response_ms"]["p50"] > 0
        assert 0 < run["audio_s_per_request"]["max"] <= 1.0 and run["audio_s_per_s"] > 0


def test_speech_targets_are_evaluated(smoke):
    _, results, _ = smoke
    targets = {t["name"]: t for t in results["targets"]}
    assert set(targets) == {"throughput_vs_sequential", "throughput_vs_static", "ttfa_p95_growth",
                            "cloned_throughput_vs_sequential", "prefill_stall", "served_vs_decode_only_1",
                            "served_vs_decode_only_8"}
    assert all(t["value"] > 0 and t["passed"] in (True, False) for t in targets.values())


def test_the_speech_step_cost_sets_served_throughput_against_the_step_alone(smoke):
    _, results, _ = smoke
    rows = results["step_cost"]["engine"]
    assert [row["streams"] for row in rows] == LEVELS and all(row["steps_timed"] == 3 for row in rows)
    served = {level["concurrency"]: level["audio_s_per_wall_s"] for level in results["voices"]["builtin"]["tritone"]["levels"]}
    targets = {t["name"]: t for t in results["targets"]}
    for row in rows:
        step_s = row["ms_per_step"]["p50"] / 1e3
        assert row["decode_audio_s_per_wall_s"] == pytest.approx(row["streams"] / (step_s * 7 * 24000 / 2048))  # tokens/s
        if row["streams"] in (1, 8):
            assert targets[f"served_vs_decode_only_{row['streams']}"]["value"] == pytest.approx(
                served[row["streams"]] / row["decode_audio_s_per_wall_s"])


def test_each_family_keeps_the_others_section(smoke, tmp_path):
    _, results, _ = smoke
    music = json.loads(PUBLISHED_MUSIC.read_text())
    music = {k: v for k, v in music.items() if k not in ("speech", "files")} | {"model": "tiny-random"}
    out = tmp_path / "tiny-random"
    report.write_results(copy.deepcopy(music), out)  # music first, then speech: both kept
    report.write_results(copy.deepcopy(results), out)
    both = json.loads((out / report.RESULTS_FILE).read_text())
    assert both["tritone"] == music["tritone"] and both["speech"]["voices"] == results["voices"]
    report.write_results(copy.deepcopy(music), out)  # and a music run again keeps the speech section
    both = json.loads((out / report.RESULTS_FILE).read_text())
    assert both["speech"]["prefill_stall"] == results["prefill_stall"]
    markdown = (out / report.MARKDOWN_FILE).read_text()
    assert markdown.startswith("# tritone benchmark: tiny-random") and "# Speech (`orpheus`)" in markdown
    for name in [*music_report.PLOTS.values(), *speech_report.PLOTS.values()]:
        assert (out / name).is_file(), name
        assert name in both["files"]


def test_readme_block_includes_speech(smoke, tmp_path):
    out, _, _ = smoke
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## Performance\n\n{report.README_START}\nOLD\n{report.README_END}\n")
    assert main(["readme", "--results", str(out.parent), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "OLD" not in text and "**Speech (`orpheus`), tiny-random** (smoke run" in text
    assert "Prefill of a 30 s voice prompt" in text and speech_report.PLOTS["speech_throughput"] in text
    assert not report.update_readme(readme, out.parent)  # idempotent
