"""Chatterbox's python-backend models: the decoupled `chatterbox` pipeline (the engine's glue, ensemble/triton/glue.py,
around ChatterboxPipeline, its voice model and its codec, the chatterbox_codec ensemble: flow then vocoder, called as
Triton models, BLS) and `chatterbox_voice` (a clip resampled to 16 kHz as the reference does, then its graph)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from tritone.ensemble import tensors as T
from tritone.ensemble.chatterbox.codec import CODEC_INPUTS, CODEC_OUTPUTS, ChatterboxCodec, OnnxVoiceModel
from tritone.ensemble.chatterbox.pipeline import ChatterboxPipeline, ChatterboxSettings
from tritone.ensemble.chatterbox.spec import FLOW, VOCODER
from tritone.ensemble.chatterbox.voice import FIELDS
from tritone.ensemble.engine.request_fields import InvalidRequest
from tritone.ensemble.triton.glue import BlsModel, StreamingModel, refused

# one value a row: [batch] in the graphs, [batch, 1] on the wire (the step models' configs reshape them)
ROW_LENGTHS = {tensor.name for tensor in FLOW.inputs + VOCODER.inputs if tensor.reshape == ()}


class CodecBls:
    """The codec's decode (flow then vocoder) as one call of the chatterbox_codec ensemble."""

    def __init__(self, bls):
        self.model = BlsModel(bls, T.CHATTERBOX_CODEC, CODEC_INPUTS, CODEC_OUTPUTS)

    def __call__(self, batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return self.model(*(batch[name].reshape(-1, 1) if name in ROW_LENGTHS else batch[name] for name in CODEC_INPUTS))


class VoiceBls:
    """chatterbox_voice: a clip [S] -> the voice's arrays by name."""

    def __init__(self, bls):
        self.model = BlsModel(bls, T.CHATTERBOX_VOICE, (T.AUDIO,), FIELDS)

    def __call__(self, clip: np.ndarray) -> dict[str, np.ndarray]:
        return {name: value[0] for name, value in zip(FIELDS, self.model(np.asarray(clip, np.float32)[None]))}


class ChatterboxTritonModel(StreamingModel):
    """The decoupled `chatterbox` speech pipeline model."""

    name = T.CHATTERBOX
    SCALARS = (T.TEXT, T.VOICE, T.EXAGGERATION, T.CFG_WEIGHT, T.MAX_DURATION, T.TEMPERATURE, T.TOP_K, T.TOP_P,
               T.MIN_P, T.REPETITION_PENALTY, T.SEED, T.RETURN_CODES)
    ARRAYS = (T.REFERENCE_AUDIO,)

    def build(self, repository, parameters, bls, on_step):
        settings = ChatterboxSettings.from_parameters(parameters)
        return ChatterboxPipeline(repository, settings, voice_model=VoiceBls(bls),
                                  decode_codes=ChatterboxCodec(CodecBls(bls), settings.codec_batch).each,
                                  on_step=on_step)

    def describe(self) -> str:
        settings, model = self.pipeline.settings, self.pipeline.model
        return (f"{model.checkpoint}, {settings.max_slots} decode slots, queue {settings.max_queue}, prefill up to "
                f"{settings.prefill_chunk} tokens per step ({settings.step_tokens} per step in all), voices: "
                f"{', '.join(model.voices) or 'cloned only'}")


class ChatterboxVoiceTritonModel:
    """`chatterbox_voice`: each request's clip [1, samples] at 24 kHz -> the voice's arrays [1, ...]. One clip a
    request (clips give prompts of their own lengths); the graph runs on ONNX Runtime on every target (once a clip)."""

    def initialize(self, args):
        self.voice = OnnxVoiceModel(Path(args["model_repository"]) / args["model_version"] / T.ONNX_FILE)

    def execute(self, requests):
        responses = []
        for request in requests:
            clips = pb_utils.get_input_tensor_by_name(request, T.AUDIO).as_numpy()
            if clips.shape[0] != 1:
                responses.append(refused(InvalidRequest(T.AUDIO, f"one clip per request, got {clips.shape[0]}")))
                continue
            voice = self.voice(clips[0])
            responses.append(pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor(name, voice[name][None]) for name in FIELDS]))
        return responses
