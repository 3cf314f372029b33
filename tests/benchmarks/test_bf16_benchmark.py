"""benchmarks/bf16.py: how greedy agreement is counted, and the recipe run end to end on tiny-random Orpheus."""

import json

import numpy as np
import pytest

from tritone.benchmarks import bf16


def codes(frames):
    return np.asarray(frames, np.int64).T  # [frames][K] -> [K, frames]


def test_agreement_counts_identical_prompts_and_frames_before_the_first_difference():
    reference = [codes([[1, 2], [3, 4], [5, 6]]), codes([[1, 2], [3, 4], [5, 6]]), codes([[1, 2], [3, 4]]),
                 codes([[7, 7], [8, 8]])]
    other = [codes([[1, 2], [3, 4], [5, 6]]),  # identical
             codes([[1, 2], [3, 9], [5, 6]]),  # one codebook differs at frame 1
             codes([[1, 2], [3, 4], [5, 6]]),  # a longer run with the reference as its prefix
             codes([[0, 7], [8, 8]])]  # differs at once
    result = bf16.agreement(reference, other)
    assert result["prompts"] == 4 and result["identical"] == 1
    assert result["frames_agreeing"] == [3, 1, 2, 0]
    assert result["mean_frames_agreeing"] == 1.5
    assert result["reference_frames"] == [3, 3, 2, 2] and result["mean_reference_frames"] == 2.5


def test_logit_error_sets_the_bf16_error_beside_fp32_s_top_two_margin():
    fp32 = np.array([[0.0, 1.0, 3.0], [2.0, 0.5, 0.0]], np.float32)
    bf16_logits = np.array([[0.0, 1.5, 3.0], [2.0, 2.5, 0.0]], np.float32)
    assert bf16.logit_error(fp32, bf16_logits) == {
        "rows": 2, "fp32_median_top1_top2_margin": 1.75, "median_abs_error": 0.0, "max_abs_error": 2.0,
        "same_argmax_rows": 1}


def test_the_recipe_writes_step_times_and_agreement_for_each_runtime(orpheus_repository, tmp_path):
    out = tmp_path / "bf16"
    assert bf16.main(["--repository", str(orpheus_repository), "--family", "orpheus", "--streams", "1,2",
                      "--repeats", "2", "--steps", "2", "--warmup", "1", "--prompts", "3", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["machine"]["cpu"]["flags"]) == {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile",
                                                        "amx_bf16"}
    assert results["machine"]["onnxruntime_bfloat16_matmul"] != "runs"  # no bf16 MatMul on ONNX Runtime's CPU
    family = results["families"]["orpheus"]
    assert [row["streams"] for row in family["table"]] == [1, 2]
    for runtime in ("onnxruntime float32", "torch float32", "torch bfloat16"):
        assert [len(family["repeat_medians_ms"][runtime][n]) for n in ("1", "2")] == [2, 2]
        assert all(ms > 0 for ms in family["step_ms"][runtime].values())
    agreement = family["agreement"]
    assert agreement["bfloat16"]["prompts"] == agreement["control_torch_float32"]["prompts"] == 3
    assert agreement["control_torch_float32"]["identical"] == 3  # torch fp32 speaks ONNX Runtime fp32's codes
    assert "| 2 |" in (out / "results.md").read_text()


@pytest.fixture(scope="module")
def orpheus_repository(tmp_path_factory):
    from tritone.export.orpheus.export import export_orpheus

    repository = tmp_path_factory.mktemp("speech-repo")
    export_orpheus("tiny-random", repository)
    return repository


def test_the_decode_thread_recipe_times_both_placements_in_fresh_processes(orpheus_repository, tmp_path):
    from tritone.benchmarks import decode_thread

    out = tmp_path / "decode_thread"
    assert decode_thread.main(["--repository", str(orpheus_repository), "--family", "orpheus", "--streams", "1,2",
                               "--repeats", "1", "--steps", "2", "--warmup", "1", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [row["streams"] for row in results["table"]] == [1, 2]
    for placement in decode_thread.PLACEMENTS:
        assert len(results["runs"][placement]) == 1
        assert all(ms > 0 for run in results["runs"][placement] for ms in run.values())
    row = results["table"][0]
    assert row["ratio"] == pytest.approx(row["loaded_elsewhere_ms"] / row["one_thread_ms"])
    assert "| 2 |" in (out / "results.md").read_text()
