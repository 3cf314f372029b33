"""The chatterbox benchmark on tiny-random against the session's real tritonserver, at 1 and 2
streams with short requests: both voices streamed, the chatterbox-tts package's generate() one at
a time on the same weights, the files and the targets' marks (CI checks that it runs, not speed)."""

from __future__ import annotations

import copy
import json
import math
import time

import pytest

from tritone.benchmarks import report
from tritone.benchmarks.__main__ import main
from tritone.benchmarks.chatterbox import report as chatterbox_report
from tritone.benchmarks.chatterbox.suite import Config, run as run_chatterbox_suite

pytestmark = pytest.mark.integration

LEVELS = [1, 2]
DURATION = 0.8  # 20 speech tokens
# each level streams 4 requests through its clients: with 2 clients, a client's second request starts while the
# other's first still decodes (two requests of one round alone may not overlap: a stream takes ~20 steps of ~10 ms)
REQUESTS = 4
TOKEN_S = 960 / 24000  # audio per speech token
TARGETS = ("single_stream_vs_sequential", "throughput_vs_sequential", "ttfa_p95_growth")


@pytest.fixture(scope="module")
def smoke(triton_stack, tiny_model_repository, tmp_path_factory):
    out = tmp_path_factory.mktemp("chatterbox-bench") / "tiny-random"
    config = Config.create("tiny-random", smoke=True, concurrency=LEVELS, duration=DURATION, min_requests=REQUESTS)
    started = time.perf_counter()
    results = run_chatterbox_suite(config, tiny_model_repository, triton_stack.grpc_url, triton_stack.metrics_url,
                                   out)
    return out, results, time.perf_counter() - started


def test_smoke_run_writes_the_chatterbox_files(smoke):
    out, results, wall = smoke
    assert wall < 90, f"the chatterbox smoke run took {wall:.0f} s"
    for name in (report.RESULTS_FILE, report.MARKDOWN_FILE, *chatterbox_report.PLOTS.values()):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    written = json.loads((out / report.RESULTS_FILE).read_text())
    assert written["model"] == "tiny-random" and set(written) == {"schema", "model", "chatterbox", "files"}
    run = written["chatterbox"]
    assert set(run) == {"schema", "family", "model", "smoke", "created", "machine", "git", "config", "server",
                        "phases_s", "perf_analyzer", "voices", "targets"}
    assert run["family"] == "chatterbox" and run["smoke"] is True and run["perf_analyzer"] == {"status": "disabled"}
    assert run["config"]["duration_s"] == DURATION and run["config"]["concurrency"] == LEVELS
    assert set(run["voices"]) == {"builtin", "cloned"}
    assert set(run["phases_s"]) == {"perf_analyzer", "tritone_load", "reference_baseline", "total"}
    markdown = (out / report.MARKDOWN_FILE).read_text()
    for heading in ("# Chatterbox (`chatterbox`): tiny-random (smoke run", "## Chatterbox targets",
                    "## Chatterbox, built-in voice: tritone streaming over gRPC",
                    "## Chatterbox, cloned voice: against chatterbox-tts ChatterboxTTS.generate() one at a time",
                    "## Chatterbox plots"):
        assert heading in markdown, heading


MODES = ("builtin", "cloned")


@pytest.mark.parametrize("mode", MODES)
def test_both_voices_stream_at_every_level(smoke, mode):
    _, results, _ = smoke
    levels = results["voices"][mode]["tritone"]["levels"]
    assert [level["concurrency"] for level in levels] == LEVELS
    for level in levels:
        n = level["concurrency"]
        assert level["errors"] == [] and level["completed"] == level["requests"] == REQUESTS
        ttfa = level["time_to_first_audio_s"]
        assert 0 < ttfa["p50"] <= ttfa["p95"] <= ttfa["max"]
        rtf = level["real_time_factor"]
        assert all(math.isfinite(rtf[key]) and rtf[key] > 0 for key in ("p50", "p95", "max"))
        audio = level["audio_s_per_request"]
        assert 0 < audio["min"] <= audio["max"] <= DURATION + 1e-6
        assert level["audio_s"] / TOKEN_S == pytest.approx(round(level["audio_s"] / TOKEN_S))  # whole tokens
        assert level["audio_s_per_wall_s"] > 0 and level["chunks"] >= level["requests"]
        assert 1 <= level["decode"]["occupancy"] <= n + 1e-9


def test_concurrent_streams_share_decode_steps(smoke):
    """At 2 streams the engine decodes both in one step for at least one voice. (A tiny-random stream of 0.8 s
    takes about 20 steps of ~10 ms, so the second request of a level can arrive after the first has ended:
    one voice's level may show no overlap; both showing none means batching is broken.)"""
    _, results, _ = smoke
    occupancy = [results["voices"][mode]["tritone"]["levels"][-1]["decode"]["occupancy"] for mode in MODES]
    assert max(occupancy) > 1, occupancy


@pytest.mark.parametrize("mode", MODES)
def test_the_reference_speaks_the_same_requests_one_at_a_time(smoke, mode):
    _, results, _ = smoke
    voice = results["voices"][mode]
    sequential = voice["baseline"]["sequential"]
    assert voice["baseline"]["static"] == []
    assert sequential["requests"] == 2 and all(s > 0 for s in sequential["service_s"])
    assert sequential["token_limit"] == 20  # floor(0.8 s x 25 tokens/s), as served
    assert len(sequential["audio_s_per_request"]) == 2
    assert all(0 < a <= DURATION + 1e-6 for a in sequential["audio_s_per_request"])
    assert sequential["audio_s_per_wall_s"] == pytest.approx(sum(sequential["audio_s_per_request"])
                                                             / sum(sequential["service_s"]))
    queued = [row["time_to_first_audio_s"]["p95"] for row in sequential["levels"]]
    assert [row["concurrency"] for row in sequential["levels"]] == LEVELS and 0 < queued[0] < queued[1]
    if mode == "cloned":
        assert sequential["clip_encode_s"] > 0
    else:
        assert sequential["clip_encode_s"] is None
    for row, level in zip(voice["comparisons"], voice["tritone"]["levels"]):
        assert row["throughput_vs_sequential"] == pytest.approx(level["audio_s_per_wall_s"]
                                                                / sequential["audio_s_per_wall_s"])
        assert row["ttfa_p95_speedup_vs_sequential"] > 0 and row["throughput_vs_static"] is None


def test_targets_are_marked_with_their_margin(smoke):
    _, results, _ = smoke
    targets = {t["name"]: t for t in results["targets"]}
    assert set(targets) == {*TARGETS, *(f"cloned_{name}" for name in TARGETS)}
    for prefix, mode in (("", "builtin"), ("cloned_", "cloned")):
        one = targets[f"{prefix}single_stream_vs_sequential"]
        value = results["voices"][mode]["comparisons"][0]["throughput_vs_sequential"]
        assert one["value"] == pytest.approx(value) and one["passed"] is (value >= 1.0)
        assert one["margin"] == pytest.approx(value)
        assert report.verdict(one).startswith("pass" if value >= 1 else "MISS")
        for name in ("throughput_vs_sequential", "ttfa_p95_growth"):  # 8 streams: not in this run
            eight = targets[prefix + name]
            assert eight["value"] is None and eight["passed"] is None and report.verdict(eight) == "not measured"


def test_eight_stream_targets_are_evaluated_where_measured(smoke):
    """The same run with its 2-stream level read as the 8-stream one: the targets take their values and marks."""
    _, results, _ = smoke
    relabelled = copy.deepcopy(results)
    for voice in relabelled["voices"].values():
        for rows in (voice["tritone"]["levels"], voice["baseline"]["sequential"]["levels"]):
            rows[1]["concurrency"] = 8
    chatterbox_report.evaluate(relabelled)
    targets = {t["name"]: t for t in relabelled["targets"]}
    for prefix, mode in (("", "builtin"), ("cloned_", "cloned")):
        levels = relabelled["voices"][mode]["tritone"]["levels"]
        sequential = relabelled["voices"][mode]["baseline"]["sequential"]["audio_s_per_wall_s"]
        throughput = targets[f"{prefix}throughput_vs_sequential"]
        value = levels[1]["audio_s_per_wall_s"] / sequential
        assert throughput["value"] == pytest.approx(value) and throughput["passed"] is (value >= 3.0)
        assert throughput["margin"] == pytest.approx(value / 3.0)
        growth = targets[f"{prefix}ttfa_p95_growth"]
        value = levels[1]["time_to_first_audio_s"]["p95"] / levels[0]["time_to_first_audio_s"]["p95"]
        assert growth["value"] == pytest.approx(value) and growth["passed"] is (value <= 2.0)
        assert growth["margin"] == pytest.approx(2.0 / value)
    table = "\n".join(chatterbox_report.markdown(relabelled))
    assert table.count("| pass, ") + table.count("| MISS, ") == 6


def test_readme_block_includes_chatterbox(smoke, tmp_path):
    out, _, _ = smoke
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## Performance\n\n{report.README_START}\nOLD\n{report.README_END}\n")
    assert main(["readme", "--results", str(out.parent), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "OLD" not in text and "**Chatterbox (`chatterbox`), tiny-random** (smoke run" in text
    assert "chatterbox-tts generate() one request at a time:" in text
    assert chatterbox_report.PLOTS["chatterbox_throughput"] in text
    assert not report.update_readme(readme, out.parent)  # idempotent
