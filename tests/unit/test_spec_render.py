"""Triton model specs and their rendered config.pbtxt files."""

import dataclasses
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from tritone.ensemble.musicgen import spec as musicgen_spec
from tritone.ensemble.triton import render
from tritone.ensemble.orpheus import spec as speech_spec
from tritone.ensemble.chatterbox import spec as chatterbox_spec
from tritone.ensemble import tensors as T
from tritone.ensemble.engine.chunker import ChunkPolicy
from tritone.ensemble.musicgen.pipeline import PipelineSettings
from tritone.ensemble.musicgen.request import Limits
from tritone.ensemble.triton.spec import CONFIG_PATHS, TARGETS, ModelSpec, Step, Tensor, ensemble_targets, to_proto
from tritone.ensemble.triton.spec import render as render_config

REPOSITORY = Path(__file__).resolve().parents[2] / "model_repository"
TENSOR_NAMES = {value for name, value in vars(T).items() if name.isupper() and isinstance(value, str)}
STATELESS = (musicgen_spec.TOKENIZER, musicgen_spec.TEXT_ENCODER, musicgen_spec.CODEC_DECODER)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("spec", musicgen_spec.MODELS + chatterbox_spec.MODELS, ids=lambda s: s.name)
def test_a_rendered_config_parses_back_into_triton_model_config(spec, target):
    config = text_format.Parse(render_config(spec, target), pb.ModelConfig())
    assert config == to_proto(spec, target)
    assert config.name == spec.name
    assert [i.name for i in config.input] == [t.name for t in spec.inputs]
    assert [o.name for o in config.output] == [t.name for t in spec.outputs]


def test_the_committed_model_repository_configs_are_up_to_date():
    assert render.stale(REPOSITORY) == []


def test_every_model_has_a_config_per_target():
    files = render.rendered_files()
    models = musicgen_spec.MODELS + speech_spec.MODELS + chatterbox_spec.MODELS
    expected = {Path(spec.name) / CONFIG_PATHS[t] for spec in models for t in TARGETS}
    assert set(files) == expected
    assert len(files) == 26  # 13 models, 2 targets each


def test_stale_lists_a_config_that_differs_from_its_spec(tmp_path):
    render.write(tmp_path)
    assert render.stale(tmp_path) == []
    edited = tmp_path / T.MUSICGEN / CONFIG_PATHS["gpu"]
    edited.write_text(edited.read_text() + "\n# hand edit\n")
    (tmp_path / T.MUSICGEN_CODEC_DECODER / CONFIG_PATHS["cpu"]).unlink()
    assert sorted(render.stale(tmp_path)) == sorted(
        [Path(T.MUSICGEN) / CONFIG_PATHS["gpu"], Path(T.MUSICGEN_CODEC_DECODER) / CONFIG_PATHS["cpu"]]
    )


@pytest.mark.parametrize("spec", musicgen_spec.MODELS + speech_spec.MODELS, ids=lambda s: s.name)
def test_every_model_and_tensor_name_comes_from_ensemble_tensors(spec):
    assert spec.name in TENSOR_NAMES
    for tensor in spec.inputs + spec.outputs:
        assert tensor.name in TENSOR_NAMES, tensor.name


@pytest.mark.parametrize("target", TARGETS)
def test_the_pipeline_is_decoupled_and_not_batched_by_triton(target):
    config = to_proto(musicgen_spec.PIPELINE, target)
    assert config.model_transaction_policy.decoupled is True
    assert config.max_batch_size == 0
    assert not config.HasField("dynamic_batching")


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("spec", STATELESS, ids=lambda s: s.name)
def test_stateless_models_have_dynamic_batching_and_are_not_decoupled(spec, target):
    config = to_proto(spec, target)
    assert config.HasField("dynamic_batching")
    assert config.max_batch_size > 0
    assert config.model_transaction_policy.decoupled is False


def test_the_pipeline_text_input_is_string_typed_and_options_are_optional():
    config = to_proto(musicgen_spec.PIPELINE, "cpu")
    inputs = {i.name: i for i in config.input}
    assert inputs[T.TEXT].data_type == pb.TYPE_STRING
    assert not inputs[T.TEXT].optional and not inputs[T.DURATION].optional
    optional = {name for name, i in inputs.items() if i.optional}
    assert optional == {T.TEMPERATURE, T.TOP_K, T.TOP_P, T.GUIDANCE_SCALE, T.SEED, T.RETURN_CODES, T.PROMPT_CODES}


@pytest.mark.parametrize("target", TARGETS)
def test_pipeline_settings_round_trip_the_spec_parameters(target):
    parameters = musicgen_spec.PIPELINE.targets[target].parameters
    settings = PipelineSettings.from_parameters(parameters)
    assert settings.max_slots == int(parameters["max_slots"])
    assert settings.max_queue == int(parameters["max_queue"])
    flat = {
        "max_slots": settings.max_slots,
        "max_queue": settings.max_queue,
        "sample_rate": settings.sample_rate,
        "lm_runtime": settings.lm_runtime,
        "device": settings.device,
        "dtype": settings.dtype,
        **dataclasses.asdict(settings.policy),
        **dataclasses.asdict(settings.limits),
    }
    assert {key: type(flat[key])(value) for key, value in parameters.items()} == {key: flat[key] for key in parameters}
    assert set(parameters) == set(flat)  # every knob is set in the config


def test_pipeline_settings_convert_each_parameter_to_its_default_type():
    settings = PipelineSettings.from_parameters({"growth": "1.5", "first_frames": "4", "max_duration_s": "12"})
    assert settings.policy == ChunkPolicy(first_frames=4, growth=1.5)
    assert settings.limits == Limits(max_duration_s=12.0)
    assert isinstance(settings.policy.first_frames, int) and isinstance(settings.limits.max_duration_s, float)


def test_pipeline_settings_reject_unknown_parameters_naming_them():
    with pytest.raises(ValueError, match=r"unknown musicgen parameters \['max_slot', 'zzz'\]"):
        PipelineSettings.from_parameters({"max_slot": "4", "zzz": "1", "max_queue": "2"})


def test_pipeline_settings_from_no_parameters_are_the_defaults():
    assert PipelineSettings.from_parameters({}) == PipelineSettings()


@pytest.mark.parametrize("target", TARGETS)
def test_text_conditioning_is_an_ensemble_of_the_tokenizer_then_the_text_encoder(target):
    config = to_proto(musicgen_spec.TEXT_CONDITIONING, target)
    assert config.platform == "ensemble" and not config.backend
    assert len(config.instance_group) == 0 and not config.HasField("dynamic_batching")  # its steps batch
    tokenizer, encoder = (to_proto(spec, target) for spec in (musicgen_spec.TOKENIZER, musicgen_spec.TEXT_ENCODER))
    assert config.max_batch_size == min(tokenizer.max_batch_size, encoder.max_batch_size) > 1
    steps = [(s.model_name, s.model_version, dict(s.input_map), dict(s.output_map))
             for s in config.ensemble_scheduling.step]
    assert steps == [
        (T.MUSICGEN_TOKENIZER, -1, {T.TEXT: T.TEXT}, {T.INPUT_IDS: T.INPUT_IDS, T.ATTENTION_MASK: T.ATTENTION_MASK}),
        (T.MUSICGEN_TEXT_ENCODER, -1, {T.INPUT_IDS: T.INPUT_IDS, T.ATTENTION_MASK: T.ATTENTION_MASK},
         {T.ENCODER_HIDDEN_STATES: T.ENCODER_HIDDEN_STATES}),
    ]
    assert [(i.name, i.data_type) for i in config.input] == [(T.TEXT, pb.TYPE_STRING)]
    assert [o.name for o in config.output] == [T.ENCODER_HIDDEN_STATES, T.ATTENTION_MASK]


@pytest.mark.parametrize("target", TARGETS)
def test_the_tokenizer_is_python_on_cpu_on_every_target_with_the_spec_s_token_limit(target):
    config = to_proto(musicgen_spec.TOKENIZER, target)
    assert (config.backend, config.platform) == ("python", "")
    assert [g.kind for g in config.instance_group] == [pb.ModelInstanceGroup.KIND_CPU]
    assert config.parameters["max_text_tokens"].string_value == musicgen_spec.LIMITS["max_text_tokens"]
    assert musicgen_spec.MODELS.index(musicgen_spec.TOKENIZER) < musicgen_spec.MODELS.index(
        musicgen_spec.TEXT_CONDITIONING) < musicgen_spec.MODELS.index(musicgen_spec.PIPELINE) == len(musicgen_spec.MODELS) - 1


def test_an_ensemble_step_reading_a_tensor_nothing_gives_is_refused_naming_it():
    source = ModelSpec("source", (Tensor("a", "FP32", (1,)),), (Tensor("b", "FP32", (1,)),),
                       {t: dataclasses.replace(musicgen_spec.TOKENIZER.targets[t], parameters={}) for t in TARGETS})
    with pytest.raises(ValueError, match=r"chain: step source reads \['c'\], which no input or earlier step gives"):
        ModelSpec("chain", (Tensor("c2", "FP32", (1,)),), (Tensor("b", "FP32", (1,)),), ensemble_targets(source),
                  steps=(Step("source", {"a": "c"}, {"b": "b"}),))
    with pytest.raises(ValueError, match=r"chain: no step writes the outputs \['z'\]"):
        ModelSpec("chain", (Tensor("a", "FP32", (1,)),), (Tensor("z", "FP32", (1,)),), ensemble_targets(source),
                  steps=(Step.of(source),))
