"""bf16 where the CPU has it: the flags read from /proc/cpuinfo (ensemble/engine/cpu_features.py), `dtype: auto`
resolved from them (ensemble/engine/lm_choice.py), and a bfloat16 LM step on this CPU for each family."""

import logging

import numpy as np
import pytest
import torch

from tritone.ensemble import tensors as T
from tritone.ensemble.engine.cpu_features import CpuFeatures
from tritone.ensemble.engine.lm_choice import LmChoice, resolve_lm
from tritone.ensemble.musicgen import spec as musicgen_spec
from tritone.ensemble.musicgen.pipeline import MusicgenPipeline, PipelineSettings
from tritone.ensemble.orpheus import spec as orpheus_spec
from tritone.ensemble.orpheus.pipeline import OrpheusPipeline, OrpheusSettings
from tests.list_stream import ListStream, run_until_ended


def cpuinfo(model: str, flags: str, processors: int = 2) -> str:
    block = f"processor\t: {{}}\nvendor_id\t: GenuineIntel\nmodel name\t: {model}\nflags\t\t: {flags}\n\n"
    return "".join(block.format(i) for i in range(processors))


BASE = "fpu vme sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma"
SAPPHIRE_RAPIDS = cpuinfo("Intel(R) Xeon(R) Platinum 8480+",
                          f"{BASE} avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8")
AMX_ONLY = cpuinfo("AMX without AVX512-BF16 listed", f"{BASE} avx512f amx_bf16 amx_tile")
ZEN4 = cpuinfo("AMD EPYC 9654 96-Core Processor", f"{BASE} avx512f avx512_vnni avx512_bf16")
SKYLAKE = cpuinfo("Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz", f"{BASE} avx512f avx512cd avx512bw avx512_vnni")
ARM = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 bf16\n"
NO_BF16 = "neither avx512_bf16 nor amx_bf16"


@pytest.mark.parametrize("text, model, bf16_flags", [
    (SAPPHIRE_RAPIDS, "Intel(R) Xeon(R) Platinum 8480+", ("avx512_bf16", "amx_bf16")),
    (AMX_ONLY, "AMX without AVX512-BF16 listed", ("amx_bf16",)),
    (ZEN4, "AMD EPYC 9654 96-Core Processor", ("avx512_bf16",)),
    (SKYLAKE, "Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz", ()),
])
def test_bf16_is_fast_exactly_where_the_flags_list_avx512_bf16_or_amx_bf16(text, model, bf16_flags):
    cpu = CpuFeatures.parse(text)
    assert cpu.model == model
    assert cpu.bf16_flags == bf16_flags
    assert cpu.fast_bf16 is bool(bf16_flags)
    assert "avx2" in cpu.flags and "flags" not in cpu.flags


def test_a_cpuinfo_without_a_flags_line_has_no_flags_and_no_fast_bf16():
    # ARM lists "Features" (its bf16 is not the x86 kernels' concern): nothing counts as fast
    cpu = CpuFeatures.parse(ARM)
    assert cpu.flags == frozenset() and not cpu.fast_bf16


def test_without_proc_cpuinfo_the_flags_are_unknown_and_bf16_is_not_fast(tmp_path):
    cpu = CpuFeatures.detect(tmp_path / "no-cpuinfo")
    assert cpu.flags == frozenset() and not cpu.fast_bf16


def test_describe_names_the_model_and_each_reported_flag():
    assert CpuFeatures.parse(ZEN4).describe() == {
        "model": "AMD EPYC 9654 96-Core Processor",
        "flags": {"avx2": True, "avx512f": True, "avx512_vnni": True, "avx512_bf16": True, "amx_tile": False,
                  "amx_bf16": False},
        "fast_bf16": True,
    }


@pytest.mark.parametrize("lm_runtime, dtype, text, expected", [
    ("auto", "auto", SAPPHIRE_RAPIDS, LmChoice("torch", "bfloat16", "auto: this CPU has avx512_bf16, amx_bf16")),
    ("auto", "auto", ZEN4, LmChoice("torch", "bfloat16", "auto: this CPU has avx512_bf16")),
    ("auto", "auto", SKYLAKE, LmChoice("onnxruntime", "float32", f"auto: this CPU has {NO_BF16}")),
    ("torch", "auto", SKYLAKE, LmChoice("torch", "float32", f"auto: this CPU has {NO_BF16}")),
    ("torch", "auto", AMX_ONLY, LmChoice("torch", "bfloat16", "auto: this CPU has amx_bf16")),
    ("onnxruntime", "auto", SAPPHIRE_RAPIDS, LmChoice("onnxruntime", "float32", "ONNX Runtime runs float32")),
    ("auto", "float32", SAPPHIRE_RAPIDS, LmChoice("onnxruntime", "float32", "asked for")),
    ("torch", "float32", SAPPHIRE_RAPIDS, LmChoice("torch", "float32", "asked for")),
    ("auto", "bfloat16", ZEN4, LmChoice("torch", "bfloat16", "asked for")),
])
def test_auto_resolves_on_the_cpu_from_its_flags(lm_runtime, dtype, text, expected):
    assert resolve_lm(lm_runtime, "cpu", dtype, CpuFeatures.parse(text)) == expected


def test_bfloat16_asked_for_on_a_cpu_without_it_runs_on_torch_and_is_logged_as_slow(caplog):
    with caplog.at_level(logging.WARNING, logger="tritone"):
        choice = resolve_lm("auto", "cpu", "bfloat16", CpuFeatures.parse(SKYLAKE))
    reason = f"asked for, but this CPU has {NO_BF16}: emulated, slower than float32"
    assert choice == LmChoice("torch", "bfloat16", reason)
    assert caplog.messages == [f"LM dtype bfloat16 on Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz: {reason}"]


@pytest.mark.parametrize("lm_runtime, device, dtype, message", [
    ("onnxruntime", "cpu", "bfloat16", "lm_runtime onnxruntime runs float32 only (ONNX Runtime has no bfloat16 CPU "
                                       "MatMul); set lm_runtime torch or auto for dtype bfloat16"),
    ("auto", "cpu", "float16", "dtype 'float16' is not served on device cpu; use one of ('auto', 'float32', "
                               "'bfloat16')"),
    ("torch", "cuda", "auto", "dtype auto is resolved on device cpu only; name float16 or bfloat16 for 'cuda'"),
    ("onnxruntime", "cuda", "float16", "lm_runtime onnxruntime runs on the CPU; device 'cuda' needs lm_runtime torch"),
    ("tensorrt", "cpu", "auto", "lm_runtime must be one of ('auto', 'onnxruntime', 'torch'), got 'tensorrt'"),
    ("auto", "cpu", "fp8", "dtype must be one of ('auto', 'float32', 'float16', 'bfloat16'), got 'fp8'"),
])
def test_a_choice_that_cannot_run_is_refused_naming_the_knob(lm_runtime, device, dtype, message):
    with pytest.raises(ValueError) as error:
        resolve_lm(lm_runtime, device, dtype, CpuFeatures.parse(SAPPHIRE_RAPIDS))
    assert str(error.value) == message


def test_the_gpu_targets_name_their_dtype_and_run_torch():
    for spec in (musicgen_spec, orpheus_spec):
        gpu = spec.PIPELINE.targets["gpu"].parameters
        choice = resolve_lm(gpu["lm_runtime"], gpu["device"], gpu["dtype"])
        assert (choice.runtime, choice.dtype) == ("torch", gpu["dtype"])


@pytest.mark.parametrize("settings", [PipelineSettings, OrpheusSettings])
def test_settings_refuse_an_unknown_dtype_or_runtime_when_the_config_is_read(settings):
    with pytest.raises(ValueError, match=r"^dtype must be one of .*, got 'half'$"):
        settings.from_parameters({"dtype": "half"})
    with pytest.raises(ValueError, match=r"^lm_runtime must be one of .*, got 'onnx'$"):
        settings.from_parameters({"lm_runtime": "onnx"})


def test_both_cpu_targets_leave_runtime_and_dtype_to_the_cpu():
    for spec in (musicgen_spec, orpheus_spec):
        cpu = spec.PIPELINE.targets["cpu"].parameters
        assert (cpu["lm_runtime"], cpu["device"], cpu["dtype"]) == ("auto", "cpu", "auto")


class RecordedLogits:
    """Wraps a family's LM: every step's logits kept."""

    def __init__(self, lm):
        self.lm, self.logits = lm, []
        self.step = self._step

    def _step(self, *args):
        logits, keys, values = self.lm.step(*args)
        self.logits.append(logits)
        return logits, keys, values

    def __getattr__(self, name):
        return getattr(self.lm, name)


def check_bf16_steps(pipeline, recorded: RecordedLogits) -> None:
    assert (pipeline.lm.runtime, pipeline.lm.dtype) == ("torch", "bfloat16")
    assert pipeline.family.zeros((1, 2)).dtype == torch.bfloat16  # the KV cache is bfloat16 too
    assert len(recorded.logits) > 3
    for logits in recorded.logits:
        assert logits.dtype == np.float32 and np.isfinite(logits).all()


def test_musicgen_runs_a_bfloat16_step_on_this_cpu_with_finite_logits(tiny_repository):
    # bfloat16 runs on any x86 CPU in torch (emulated where the flags are missing): no skip
    pipeline = MusicgenPipeline(tiny_repository, PipelineSettings(lm_runtime="torch", device="cpu", dtype="bfloat16"))
    recorded = pipeline.family.lm = RecordedLogits(pipeline.family.lm)
    stream = ListStream()
    pipeline.submit([(pipeline.validate({T.TEXT: "lo-fi piano with rain", T.DURATION: 0.2, T.TOP_K: 1,
                                         T.RETURN_CODES: True}), stream)])
    run_until_ended(pipeline, stream)
    check_bf16_steps(pipeline, recorded)
    model = pipeline.model
    frames = round(0.2 * model.frame_rate)
    assert not stream.failed and stream.codes().shape == (model.num_codebooks, frames)
    assert ((stream.codes() >= 0) & (stream.codes() < model.codebook_size)).all()


def test_orpheus_runs_a_bfloat16_step_on_this_cpu_with_finite_logits(orpheus_repository):
    pipeline = OrpheusPipeline(orpheus_repository, OrpheusSettings(lm_runtime="torch", device="cpu",
                                                                   dtype="bfloat16"))
    recorded = pipeline.family.lm = RecordedLogits(pipeline.family.lm)
    stream = ListStream()
    pipeline.submit(pipeline.validate({T.TEXT: "Hello there.", T.MAX_DURATION: 0.5, T.TOP_K: 1,
                                       T.RETURN_CODES: True}), stream)
    run_until_ended(pipeline, stream, limit=1000)
    check_bf16_steps(pipeline, recorded)
    codes = stream.codes()
    assert not stream.failed and codes.shape[0] == 7 and 1 <= codes.shape[1] <= 5  # 0.5 s: at most 5 frames
    assert ((codes >= 0) & (codes < pipeline.model.codebook_size)).all()
