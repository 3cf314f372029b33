"""A tritonclient user reading only the model config learns what each input means: units, layouts,
ranges, defaults, the speakers and the clip rate (config parameters `input.<name>` / `output.<name>`,
rendered from the family specs)."""

from __future__ import annotations

import pytest
import tritonclient.grpc as grpcclient

from tritone.ensemble import tensors as T
from tritone.ensemble.musicgen import spec as musicgen_spec
from tritone.ensemble.orpheus import spec as orpheus_spec

pytestmark = pytest.mark.integration


def described(triton_stack, model: str) -> tuple[dict[str, str], dict]:
    client = grpcclient.InferenceServerClient(triton_stack.grpc_url)
    try:
        config = client.get_model_config(model, as_json=True)["config"]
        metadata = client.get_model_metadata(model, as_json=True)
    finally:
        client.close()
    return {key: value["string_value"] for key, value in config["parameters"].items()}, metadata


def test_an_orpheus_client_learns_voices_clip_rate_layouts_and_sampling_ranges(triton_stack):
    parameters, metadata = described(triton_stack, T.ORPHEUS)
    assert parameters["speakers"] == "tara,leah,jess,leo,dan,mia,zac,zoe"
    assert parameters["input.voice"] == ("a built-in speaker: tara, leah, jess, leo, dan, mia, zac, zoe "
                                         "(parameter speakers); absent: no speaker prefix")
    assert parameters["input.reference_audio"].startswith("[samples] mono float32 in [-1, 1] at 24000 Hz, 1 to 30 s")
    assert parameters["input.reference_codes"].startswith("[7, frames]")
    assert parameters["input.temperature"] == "in [0, 10], 0 is greedy; default 0.6"
    assert parameters["input.top_p"] == "in (0, 1], 1 disables it; default 0.8"
    assert parameters["input.repetition_penalty"] == "in [1, 3], 1 disables it; default 1.3"
    assert parameters["output.input_tokens"] == "on the final chunk: the LM's input (prompt) tokens"
    # every input and output the metadata lists is described, exactly as the spec says
    names = [t["name"] for t in metadata["inputs"]] + [t["name"] for t in metadata["outputs"]]
    docs = {f"input.{t.name}": t.doc for t in orpheus_spec.PIPELINE.inputs}
    docs |= {f"output.{t.name}": t.doc for t in orpheus_spec.PIPELINE.outputs}
    assert {key: parameters[key] for key in docs} == docs and len(docs) == len(names)
    encoder, _ = described(triton_stack, T.SNAC_ENCODER)
    assert encoder["input.audio"] == "[samples] mono float32 in [-1, 1] at 24000 Hz"


def test_a_musicgen_client_learns_that_prompt_codes_is_codebooks_by_frames(triton_stack):
    parameters, _ = described(triton_stack, T.MUSICGEN)
    assert parameters["input.prompt_codes"].startswith("[codebooks (4), frames]")
    assert parameters["input.guidance_scale"] == "classifier-free guidance, in [1, 20], 1 disables it; default 3"
    assert parameters["input.duration"] == "seconds of new audio, in [0.1, 30]"
    assert parameters["input.top_k"] == "in [0, the codebook size], 0 disables it; default 250"
    assert {key: parameters[key] for key in parameters if key.startswith("input.")} == {
        f"input.{t.name}": t.doc for t in musicgen_spec.PIPELINE.inputs}
