"""The benchmark's smoke configuration on tiny-random against the session's real tritonserver:
every recipe runs and writes its files with sane values (CI checks that it runs, not speed)."""

from __future__ import annotations

import json
import time

import pytest

from tritone.benchmarks import report
from tritone.benchmarks.__main__ import main
from tritone.benchmarks.load import underruns
from tritone.benchmarks.musicgen import report as music_report
from tritone.benchmarks.musicgen.suite import Config as BenchConfig, run as run_suite

pytestmark = pytest.mark.integration

# The session server has 4 decode slots and 4 waiting places: 8 is the most it takes at once.
LEVELS = [1, 2, 4, 8]


def test_underruns_follow_the_playback_clock():
    # first chunk at t=1 (0.2 s: plays until 1.2); second on time; third 0.3 s late; fourth on time
    arrivals = [(1.0, 0.2), (1.1, 0.4), (1.9, 0.5), (2.0, 1.0)]
    assert underruns(arrivals) == pytest.approx((1, 0.3))
    assert underruns([]) == (0, 0.0)
    assert underruns([(0.0, 1.0), (0.5, 1.0), (1.5, 1.0)]) == (0, 0.0)


@pytest.fixture(scope="module")
def smoke_results(triton_stack, tiny_model_repository, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "tiny-random"
    config = BenchConfig.create("tiny-random", smoke=True, concurrency=LEVELS, perf_analyzer=False)
    started = time.perf_counter()
    results = run_suite(config, tiny_model_repository, triton_stack.grpc_url, triton_stack.metrics_url, out)
    return out, results, time.perf_counter() - started


def test_smoke_run_writes_every_file(smoke_results):
    out, results, wall = smoke_results
    assert wall < 60, f"the smoke run took {wall:.0f} s"
    for name in (report.RESULTS_FILE, report.MARKDOWN_FILE, *music_report.PLOTS.values()):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    written = json.loads((out / report.RESULTS_FILE).read_text())
    for key in ("model", "smoke", "machine", "git", "config", "server", "tritone", "baseline", "step_cost",
                "comparisons", "targets", "perf_analyzer", "phases_s"):
        assert key in written, key
    assert written["model"] == "tiny-random" and written["smoke"] is True
    assert written["machine"]["cores"] >= 1 and written["machine"]["memory_gib"] > 0
    assert written["machine"]["cpu_model"]
    assert written["perf_analyzer"]["status"] == "disabled"
    markdown = (out / report.MARKDOWN_FILE).read_text()
    assert "## Targets" in markdown and "| 8 |" in markdown


def test_every_concurrency_level_streams_cleanly(smoke_results):
    _, results, _ = smoke_results
    levels = results["tritone"]["levels"]
    assert [level["concurrency"] for level in levels] == LEVELS
    duration = results["config"]["duration_s"]
    for level in levels:
        n = level["concurrency"]
        assert level["errors"] == [] and level["completed"] == level["requests"] >= max(n, 2)
        assert level["audio_s"] == pytest.approx(level["requests"] * duration, rel=1e-3)
        ttfa = level["time_to_first_audio_s"]
        assert 0 < ttfa["p50"] <= ttfa["p95"] <= ttfa["p99"] <= ttfa["max"]
        assert level["chunks"] >= level["requests"]
        assert level["audio_s_per_wall_s"] > 0 and level["real_time_factor"]["p50"] > 0
        assert level["underruns"]["chunks"] >= 0 and level["underruns"]["stall_s"] >= 0
        decode = level["decode"]
        assert decode["steps"] > 0 and 1 <= decode["occupancy"] <= min(n, 4) + 1e-9
    # with in-flight batching, 8 streams share decode steps
    assert levels[-1]["decode"]["occupancy"] > 1


def test_baselines_step_cost_and_ratios(smoke_results):
    _, results, _ = smoke_results
    baseline = results["baseline"]
    assert baseline["sequential"]["audio_s_per_wall_s"] > 0
    assert [r["concurrency"] for r in baseline["sequential"]["levels"]] == LEVELS
    assert [r["concurrency"] for r in baseline["static"]] == LEVELS
    assert all(r["audio_s_per_wall_s"] > 0 for r in baseline["static"])
    for row in results["comparisons"]:
        for key in ("throughput_vs_sequential", "throughput_vs_static", "ttfa_p95_speedup_vs_sequential",
                    "ttfa_p95_speedup_vs_static"):
            assert row[key] is not None and row[key] > 0, (row["concurrency"], key)
    step = results["step_cost"]
    assert [r["streams"] for r in step["engine"]] == LEVELS
    assert all(r["ms_per_step"]["p50"] > 0 for r in step["engine"])
    assert step["transformers_eager"]["ms_per_step"] > 0 and step["engine_vs_eager_one_stream"] > 0
    targets = {t["name"]: t for t in results["targets"]}
    assert set(targets) == {"throughput_vs_sequential", "throughput_vs_static", "ttfa_p95_growth",
                            "decode_step_vs_eager", "served_vs_decode_only_1", "served_vs_decode_only_8"}
    assert all(t["value"] > 0 and t["passed"] in (True, False) for t in targets.values())
    served = targets["served_vs_decode_only_1"]  # served throughput / the LM step's ceiling at one stream
    level = next(r for r in results["tritone"]["levels"] if r["concurrency"] == 1)
    assert served["value"] == level["audio_s_per_wall_s"] / step["engine"][0]["decode_audio_s_per_wall_s"]


def test_readme_block_is_rewritten(smoke_results, tmp_path):
    out, _, _ = smoke_results
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## Performance\n\n{report.README_START}\nPLACEHOLDER-BLOCK\n{report.README_END}\n\n## After\n")
    assert main(["readme", "--results", str(out.parent), "--readme", str(readme)]) == 0  # the CLI
    text = readme.read_text()
    assert "PLACEHOLDER-BLOCK" not in text and "tiny-random" in text and "## After" in text
    assert "| 8 |" in text and "smoke run" in text
    assert not report.update_readme(readme, out.parent)  # idempotent
