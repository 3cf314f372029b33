"""The GPU target and the Docker files, checked with what runs without a GPU or a Docker engine."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from tritone.ensemble.musicgen import spec as musicgen_spec
from tritone.ensemble.orpheus import spec as speech_spec
from tritone.ensemble import tensors as T
from tritone.ensemble.families import FAMILIES
from tritone.ensemble.orpheus.pipeline import ORPHEUS_POLICY
from tritone.ensemble.musicgen.text_conditioning import BUCKETS
from tritone.export.tensorrt import keep_fp32, plan_facts, profile_for
from tritone.serving.__main__ import connection_age_args, parse_args as parse_serving_args
from tritone.serving.container import DRAIN_S, parse_args, prepare, server_command

ROOT = Path(__file__).resolve().parents[2]
ONNX_TYPES = {onnx.TensorProto.INT64: pb.TYPE_INT64, onnx.TensorProto.FLOAT: pb.TYPE_FP32}
STATELESS = (musicgen_spec.TEXT_ENCODER, musicgen_spec.CODEC_DECODER)
TINY = {name: "tiny-random" for name in FAMILIES}


def gpu_config(name: str) -> pb.ModelConfig:
    return text_format.Parse((ROOT / "model_repository" / name / "config.pbtxt").read_text(), pb.ModelConfig())


@pytest.mark.parametrize("spec", STATELESS, ids=lambda s: s.name)
def test_gpu_configs_match_the_exported_graphs_names_dtypes_and_ranks(spec, tiny_repository):
    config = gpu_config(spec.name)
    graph = onnx.load(str(tiny_repository / spec.name / "1" / T.ONNX_FILE), load_external_data=False).graph
    assert config.platform == "tensorrt_plan" and config.default_model_filename == "model.plan"
    assert [g.kind for g in config.instance_group] == [pb.ModelInstanceGroup.KIND_GPU]
    assert config.dynamic_batching.max_queue_delay_microseconds > 0
    for declared, actual in ((config.input, graph.input), (config.output, graph.output)):
        assert [t.name for t in declared] == [v.name for v in actual]
        for tensor, value in zip(declared, actual):
            assert tensor.data_type == ONNX_TYPES[value.type.tensor_type.elem_type], tensor.name
            assert len(tensor.dims) + 1 == len(value.type.tensor_type.shape.dim), tensor.name  # + batch


def test_the_gpu_pipeline_runs_the_lm_on_torch_with_the_cache_on_the_device():
    parameters = {k: v.string_value for k, v in gpu_config(T.MUSICGEN).parameters.items()}
    assert (parameters["lm_runtime"], parameters["device"]) == ("torch", "cuda")
    assert [g.kind for g in gpu_config(T.MUSICGEN).instance_group] == [pb.ModelInstanceGroup.KIND_GPU]


def test_tensorrt_profiles_cover_every_shape_the_pipeline_sends():
    text = profile_for(musicgen_spec.TEXT_ENCODER).shapes
    for name in (T.INPUT_IDS, T.ATTENTION_MASK):
        low, _, high = text[name]
        assert low == (1, 1) and high == (32, musicgen_spec.MAX_TEXT_TOKENS)
    assert max(b for b in BUCKETS if b <= musicgen_spec.MAX_TEXT_TOKENS) <= high[1]
    low, opt, high = profile_for(musicgen_spec.CODEC_DECODER).shapes[T.AUDIO_CODES]
    assert low == (1, 4, musicgen_spec.MIN_WINDOW) and high == (32, 4, musicgen_spec.MAX_WINDOW)
    assert musicgen_spec.MAX_WINDOW == 100 + 25 + 5  # max_chunk_frames + left_context + lookahead
    assert low <= opt <= high


def test_speech_tensorrt_profiles_cover_reference_clips_and_every_codec_window():
    low, _, high = profile_for(speech_spec.CODEC_ENCODER).shapes[T.AUDIO]
    assert low == (1, 2048) and high == (32, 30 * 24000)  # a frame to the longest reference clip
    low, opt, high = profile_for(speech_spec.CODEC_DECODER).shapes[T.AUDIO_CODES]
    policy = ORPHEUS_POLICY
    assert low == (1, 7, 1) and high == (32, 7, policy.max_chunk_frames + policy.left_context + policy.lookahead)
    assert low <= opt <= high
    parameters = {k: v.string_value for k, v in gpu_config(T.ORPHEUS).parameters.items()}
    assert (parameters["lm_runtime"], parameters["device"]) == ("torch", "cuda")
    assert keep_fp32(speech_spec.CODEC_ENCODER, ["/encoder/Conv", "/quantizer/ArgMax"]) == [
        "/encoder/Conv", "/quantizer/ArgMax"]


def test_fp16_builds_keep_t5_layer_norms_and_feed_forward_outputs_in_fp32(tiny_repository):
    graph = onnx.load(str(tiny_repository / T.MUSICGEN_TEXT_ENCODER / "1" / T.ONNX_FILE)).graph
    names = [node.name for node in graph.node]
    pinned = keep_fp32(musicgen_spec.TEXT_ENCODER, names)
    assert any("layer_norm" in n for n in pinned) and any("DenseReluDense/wo" in n for n in pinned)
    assert not any("SelfAttention/q" in n for n in pinned)


def compose_config(*options: str) -> str:
    """`docker-compose config` of the compose file: validated and normalized by docker-compose itself."""
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is missing: apt-get install --no-install-recommends docker-compose"
    result = subprocess.run([binary, "-f", str(ROOT / "docker-compose.yml"), "config", *options],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_compose_file_validates_with_docker_compose_config():
    services = compose_config("--services")
    assert sorted(services.split()) == ["gateway-cpu", "gateway-gpu", "triton-cpu", "triton-gpu"]


def test_compose_publishes_only_the_gateway_and_keeps_triton_on_the_internal_network():
    services = yaml.safe_load(compose_config())["services"]
    for name in ("triton-cpu", "triton-gpu"):  # Triton's ports have no authentication
        assert "ports" not in services[name], f"{name} publishes Triton's ports"
        assert services[name]["expose"] == ["8000", "8001", "8002"]
    for name in ("gateway-cpu", "gateway-gpu"):  # the front door, with the API keys
        assert services[name]["ports"] == [{"published": 8080, "target": 8080}]
        assert services[name]["environment"]["TRITONE_ADMIN_KEYS"] == "[]"


def test_compose_gives_triton_more_than_the_drain_time_to_stop():
    services = yaml.safe_load(compose_config())["services"]
    for name in ("triton-cpu", "triton-gpu"):  # docker kills at stop_grace_period: streams get DRAIN_S first
        grace = services[name]["stop_grace_period"]
        assert grace.endswith("s") and float(grace[:-1]) > DRAIN_S, grace


def test_the_dockerfile_passes_hadolint():
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run([str(hadolint), str(ROOT / "Dockerfile.server")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_container_prepares_its_volume_once_and_serves_in_explicit_mode(tmp_path, capsys):
    volume = tmp_path / "models"
    prepare("cpu", volume, "fp16", TINY)
    assert (volume / T.MUSICGEN / "configs" / "cpu.pbtxt").is_file()
    assert (volume / T.MUSICGEN / "1" / "lm_step.onnx").is_file()
    assert (volume / T.ORPHEUS / "configs" / "cpu.pbtxt").is_file()
    assert (volume / T.ORPHEUS / "1" / "lm_step.onnx").is_file()
    assert (volume / T.SNAC_DECODER / "1" / "model.onnx").is_file()
    capsys.readouterr()
    prepare("cpu", volume, "fp16", TINY)  # a restart finds the exports
    out = capsys.readouterr().out
    assert "already holds an export of tiny-random" in out
    assert "exporting" not in out
    command = server_command("cpu", volume)
    assert command[1:4] == ["-m", "tritone.serving", "--model-repository"]
    assert ["--model-control-mode", "explicit", "--load-model", "*", "--drain-timeout", str(DRAIN_S)] == command[-6:]
    assert server_command("gpu", volume) == [
        "/opt/tritonserver/bin/tritonserver", f"--model-repository={volume}",
        "--model-control-mode=explicit", "--load-model=*", "--metrics-config=summary_latencies=true",
        f"--exit-timeout-secs={DRAIN_S}", "--grpc-max-connection-age=60000", "--grpc-max-connection-age-grace=660000"]
    # the CPU image's Triton closes connections as the GPU one does (new replicas get streams: README, cluster)
    ages = parse_serving_args(command[3:])
    assert (ages.grpc_max_connection_age, ages.grpc_max_connection_age_grace) == (60, 660)
    assert connection_age_args(ages) == ["--grpc-max-connection-age=60000", "--grpc-max-connection-age-grace=660000"]


def test_every_family_s_plans_are_its_tensorrt_models_with_checkable_sample_inputs():
    plans = {name: [spec.name for spec in family.plan_models()] for name, family in FAMILIES.items()}
    assert plans == {"musicgen": [T.MUSICGEN_TEXT_ENCODER, T.MUSICGEN_CODEC_DECODER],
                     "orpheus": [T.SNAC_ENCODER, T.SNAC_DECODER],
                     "chatterbox": [T.CHATTERBOX_FLOW, T.CHATTERBOX_VOCODER]}
    for name, family in FAMILIES.items():
        facts = plan_facts(name)
        assert set(facts.FP32_LAYERS) <= set(plans[name])
        for spec in family.plan_models():
            inputs = facts.sample_inputs(spec, codebook_size=64)
            assert [tensor.name for tensor in spec.inputs] == list(inputs), spec.name
            for tensor in spec.inputs:  # two rows of the spec's rank, inside its TensorRT profile
                array = inputs[tensor.name]
                low, _, high = profile_for(spec).shapes[tensor.name]
                dims = tensor.dims if tensor.reshape is None else tensor.reshape  # the graph's shape
                assert array.shape[0] == 2 and array.ndim == len(dims) + 1, tensor.name
                assert all(lo <= n <= hi for lo, n, hi in zip(low[1:], array.shape[1:], high[1:])), tensor.name
        with pytest.raises(ValueError, match=f"{family.models()[-1].name} has no TensorRT plan"):
            facts.sample_inputs(family.models()[-1], 64)


def test_the_container_takes_each_family_s_checkpoint_from_its_variable_or_option(monkeypatch, tmp_path):
    monkeypatch.setenv("MODEL", "music-dir")
    monkeypatch.setenv("SPEECH_MODEL", "speech-dir")
    monkeypatch.setenv("CHATTERBOX_MODEL", "chatterbox-dir")
    assert parse_args(["--target", "cpu"]).checkpoints == {"musicgen": "music-dir", "orpheus": "speech-dir",
                                                          "chatterbox": "chatterbox-dir"}
    args = parse_args(["--target", "gpu", "--orpheus-checkpoint", "tiny-random"])
    assert args.checkpoints == {"musicgen": "music-dir", "orpheus": "tiny-random", "chatterbox": "chatterbox-dir"}
    monkeypatch.delenv("CHATTERBOX_MODEL")
    assert parse_args(["--target", "cpu"]).checkpoints["chatterbox"] == "ResembleAI/chatterbox"
    monkeypatch.delenv("SPEECH_MODEL")
    assert parse_args(["--target", "cpu"]).checkpoints["orpheus"] == "canopylabs/orpheus-3b-0.1-ft"
    with pytest.raises(ValueError, match=r"checkpoints: no family named \['speech'\]"):
        prepare("cpu", tmp_path / "models", "fp16", {"speech": "tiny-random"})
