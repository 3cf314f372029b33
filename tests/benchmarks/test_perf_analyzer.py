"""perf_analyzer (the real binary from the tritonclient wheel) over the checked-in recipes, in smoke
mode, against the session's tritonserver serving tiny-random. A missing binary or library fails
with the install line; nothing is skipped."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tritone.benchmarks import perf_analyzer as pa

pytestmark = pytest.mark.integration

# The default chunk policy cuts 2 s (100 frames at 50 Hz) into chunks of 10, 20, 40 and 30 frames.
CHUNKS_IN_2_S = 4


@pytest.fixture(scope="module")
def suite(triton_stack, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("perf_analyzer")
    results = pa.run_perf_analyzer_suite(triton_stack.grpc_url, out_dir, smoke=True)
    json.dumps(results)  # JSON-ready for the benchmark CLI
    return results, out_dir


def measured_runs(results):
    for name, recipe in results["recipes"].items():
        for run in recipe["runs"]:
            yield name, run


def test_every_recipe_runs_at_each_smoke_concurrency_without_errors(suite):
    results, _ = suite
    assert results["errors"] == []
    assert set(results["recipes"]) == {"musicgen_text_encoder", "musicgen_text_conditioning", "musicgen_codec_decoder",
                                       "musicgen"}
    for name in ("musicgen_text_encoder", "musicgen_codec_decoder"):
        points = {(run["batching"], run["concurrency"]) for run in results["recipes"][name]["runs"]}
        assert points == {("rendered", 1), ("rendered", 2), ("none", 1), ("none", 2)}
    assert {run["concurrency"] for run in results["recipes"]["musicgen"]["runs"]} == {1, 2}
    points = {(run["batching"], run["concurrency"]) for run in results["recipes"]["musicgen_text_conditioning"]["runs"]}
    assert points == {("rendered", 1), ("rendered", 2)}  # an ensemble has no batcher of its own to take away


def test_every_run_reports_throughput_and_latency_percentiles(suite):
    results, _ = suite
    for name, run in measured_runs(results):
        assert run["throughput_infer_per_s"] > 0, (name, run)
        latency = run["latency_ms"]
        assert 0 < latency["p50"] <= latency["p90"] <= latency["p95"] <= latency["p99"], (name, run)
        assert run["command"].startswith(f"perf_analyzer -m {results['recipes'][name]['model']} ")


def test_runs_without_dynamic_batching_never_batch_and_rendered_ones_batch_under_load(suite):
    results, _ = suite
    for name in ("musicgen_text_encoder", "musicgen_codec_decoder"):
        runs = {(run["batching"], run["concurrency"]): run for run in results["recipes"][name]["runs"]}
        for concurrency in (1, 2):
            assert runs["none", concurrency]["dynamic_batching"] is False
            assert runs["none", concurrency]["server_avg_batch_size"] == 1.0
            assert runs["rendered", concurrency]["dynamic_batching"] is True
        # two clients and a 2 ms queue delay: the batcher pairs most requests
        assert runs["rendered", 2]["server_avg_batch_size"] > 1.2, runs["rendered", 2]


def test_the_text_conditioning_recipe_sends_raw_text_through_the_ensemble_whose_steps_batch(suite):
    results, _ = suite
    recipe = results["recipes"]["musicgen_text_conditioning"]
    assert recipe["model"] == "musicgen_text_conditioning"
    runs = {run["concurrency"]: run for run in recipe["runs"]}
    for concurrency, run in runs.items():
        assert run["dynamic_batching"] is False and run["server_avg_batch_size"] == 1.0  # the ensemble's own count
        assert set(run["step_avg_batch_size"]) == {"musicgen_tokenizer", "musicgen_text_encoder"}
        assert all(size >= 1.0 for size in run["step_avg_batch_size"].values()), run
    assert runs[1]["step_avg_batch_size"] == {"musicgen_tokenizer": 1.0, "musicgen_text_encoder": 1.0}
    # two clients and a 2 ms queue delay in each step: the steps' batchers pair requests
    assert runs[2]["step_avg_batch_size"]["musicgen_tokenizer"] > 1.2, runs[2]


def test_streaming_recipe_reports_first_chunk_and_inter_chunk_latency_of_2s_requests(suite):
    results, _ = suite
    for run in results["recipes"]["musicgen"]["runs"]:
        assert run["chunks_per_request"] == {"min": CHUNKS_IN_2_S, "max": CHUNKS_IN_2_S}
        assert run["audio_s_per_request"] == {"min": 2.0, "max": 2.0}
        assert run["requests_in_export"] >= run["requests"] >= 3 * 4  # three stable windows of >= 4 requests
        first, gaps, whole = run["first_response_ms"], run["inter_chunk_ms"], run["request_latency_ms"]
        assert 0 < first["p50"] <= first["p95"] <= first["max"]
        assert 0 < gaps["p50"] <= gaps["p95"] <= gaps["max"]
        # a request is its first chunk plus three gaps
        assert first["p50"] < whole["p50"] <= first["max"] + 3 * gaps["max"]
        chunks_per_s = CHUNKS_IN_2_S * run["throughput_infer_per_s"]
        assert run["response_throughput_per_s"] == pytest.approx(chunks_per_s, rel=0.05)
        assert run["audio_s_per_s"] == pytest.approx(2.0 * run["throughput_infer_per_s"], rel=1e-3)


def test_raw_outputs_are_kept_and_the_profile_export_holds_timestamps_not_audio(suite):
    results, out_dir = suite
    for name, run in measured_runs(results):
        assert (out_dir / "raw" / name / f"{run['batching']}-c{run['concurrency']}.csv").is_file()
        assert (out_dir / "raw" / name / f"{run['batching']}-c{run['concurrency']}.log").is_file()
    export = json.loads((out_dir / "raw" / "musicgen" / "rendered-c1.profile.json").read_text())
    request = export["experiments"][0]["requests"][0]
    assert set(request) == {"timestamp", "response_timestamps", "audio_samples", "sample_rate"}
    assert sum(request["audio_samples"]) == 2 * request["sample_rate"]


def test_models_are_back_to_their_rendered_configs_afterwards(suite, triton_stack):
    client = grpcclient.InferenceServerClient(triton_stack.grpc_url)
    for model in ("musicgen_text_encoder", "musicgen_codec_decoder", "musicgen"):
        assert client.is_model_ready(model)
    for model in ("musicgen_text_encoder", "musicgen_codec_decoder"):
        batching = client.get_model_config(model, as_json=True)["config"]["dynamic_batching"]
        assert int(batching["max_queue_delay_microseconds"]) == 2000


def test_every_recipe_measures_a_model_of_one_registered_family():
    # a family's recipes come from the registry (its models): a recipe for no registered model would never run
    assert sorted(pa.ALL_RECIPES) == sorted(path.stem for path in pa.RECIPES.glob("*.json"))
    assert len(set(pa.ALL_RECIPES)) == len(pa.ALL_RECIPES)
    assert pa.FAMILY_RECIPES["musicgen"][-1] == "musicgen" and pa.FAMILY_RECIPES["orpheus"][-1] == "orpheus"
    assert pa.DEFAULT_RECIPES == pa.FAMILY_RECIPES["musicgen"]


def test_recipes_spell_out_every_measurement_flag():
    for smoke in (False, True):
        for recipe in pa.load_recipes(smoke=smoke, names=pa.ALL_RECIPES):
            assert recipe.input_data.is_file()
            for flag in ("-i", "-b", "--shared-memory", "--warmup-request-count", "--measurement-mode",
                         "--measurement-request-count", "--stability-percentage", "--max-trials"):
                assert flag in recipe.flags, (recipe.name, flag)
            assert recipe.flags["--measurement-mode"] == "count_windows"
            assert recipe.concurrency == ((1, 2) if smoke else (1, 2, 4, 8))
    for name in ("musicgen", "orpheus"):  # the decoupled pipelines stream
        streaming = pa.Recipe.load(pa.RECIPES / f"{name}.json")
        assert streaming.flags["--async"] is True and streaming.flags["--streaming"] is True
        assert streaming.flags["-i"] == "grpc" and streaming.profile_export
    assert set(pa.FAMILY_RECIPES["orpheus"]) == {"orpheus", "snac_encoder", "snac_decoder"}
    for name in ("snac_encoder", "snac_decoder"):  # smoke: the batcher as rendered only
        assert pa.Recipe.load(pa.RECIPES / f"{name}.json").batching == ("rendered", "none")
        assert pa.Recipe.load(pa.RECIPES / f"{name}.json", smoke=True).batching == ("rendered",)


def test_a_warmup_shorter_than_the_concurrency_is_refused(tmp_path):
    recipe = json.loads((pa.RECIPES / "musicgen.json").read_text())
    recipe["flags"]["--warmup-request-count"] = "4"
    (tmp_path / "musicgen.json").write_text(json.dumps(recipe))
    with pytest.raises(ValueError, match="hangs"):
        pa.Recipe.load(tmp_path / "musicgen.json")


def test_input_data_fits_both_tiny_random_and_musicgen_small():
    encoder = json.loads((pa.BENCHMARKS / "data" / "musicgen_text_encoder.json").read_text())["data"][0]
    assert encoder["input_ids"]["shape"] == encoder["attention_mask"]["shape"] == [16]
    assert max(encoder["input_ids"]["content"]) < 128  # tiny-random's text vocabulary
    codes = json.loads((pa.BENCHMARKS / "data" / "musicgen_codec_decoder.json").read_text())["data"][0]["audio_codes"]
    assert codes["shape"] == [4, 35] and len(codes["content"]) == 4 * 35
    assert 0 <= min(codes["content"]) and max(codes["content"]) < 64  # tiny-random's codebooks


def test_the_text_conditioning_input_is_raw_text_in_the_first_bucket_of_tiny_random(tiny_model_repository):
    from tritone.ensemble.musicgen.text_conditioning import PromptTokenizer, tokenizer_dir

    rows = json.loads((pa.BENCHMARKS / "data" / "musicgen_text_conditioning.json").read_text())["data"]
    prompts = [row["text"][0] for row in rows]
    assert len(prompts) == 4 and all(set(row) == {"text"} and len(row["text"]) == 1 for row in rows)
    tokenizer = PromptTokenizer(tokenizer_dir(tiny_model_repository), 256)
    assert [tokenizer([prompt])[0].shape for prompt in prompts] == [(1, 16)] * 4  # one bucket: the encoder batches


def test_speech_input_data_fits_tiny_random_and_the_released_checkpoints():
    orpheus = json.loads((pa.BENCHMARKS / "data" / "orpheus.json").read_text())["data"][0]
    assert orpheus["voice"] == ["tara"]  # a speaker of orpheus-3b-0.1-ft and of the random exports
    assert orpheus["top_k"] == [1] and 0 < orpheus["max_duration"][0] <= 60
    codes = json.loads((pa.BENCHMARKS / "data" / "snac_decoder.json").read_text())["data"][0]["audio_codes"]
    assert codes["shape"] == [7, 31] and len(codes["content"]) == 7 * 31  # a steady chunk's window
    assert 0 <= min(codes["content"]) and max(codes["content"]) < 64  # tiny-random's codebooks
    clip = json.loads((pa.BENCHMARKS / "data" / "snac_encoder.json").read_text())["data"][0]["audio"]
    samples = np.frombuffer(base64.b64decode(clip["b64"]), np.float32)
    assert clip["shape"] == [samples.size] == [3 * 24000]
    assert 0.1 < np.abs(samples).max() <= 1.0


def test_a_missing_library_names_its_install_line(monkeypatch):
    monkeypatch.setattr(pa.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(pa.PerfAnalyzerNotInstalled, match="pip install nvidia-cuda-runtime-cu12"):
        pa.find_perf_analyzer()

    def no_libb64(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.undo()
    monkeypatch.setattr(pa.ctypes, "CDLL", no_libb64)
    with pytest.raises(pa.PerfAnalyzerNotInstalled, match="apt-get install libb64-0d"):
        pa.find_perf_analyzer()
