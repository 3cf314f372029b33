"""The toy family's python-backend models: the decoupled `toy` pipeline (the shared StreamingModel glue
around ToyPipeline, its codec called through BLS) and the stateless `toy_codec`."""

from __future__ import annotations

import numpy as np
import triton_python_backend_utils as pb_utils

from tritone.ensemble import tensors as T
from tritone.ensemble.triton.glue import BlsModel, StreamingModel

from tests.toy_family.decoding import decode_frames
from tests.toy_family.pipeline import ToyPipeline, ToySettings
from tests.toy_family.spec import CODEC_NAME, PIPELINE_NAME


class ToyTritonModel(StreamingModel):
    name = PIPELINE_NAME
    SCALARS = (T.TEXT, T.DURATION, T.RETURN_CODES)

    def build(self, repository, parameters, bls, on_step):
        return ToyPipeline(repository, ToySettings.from_parameters(parameters),
                           BlsModel(bls, CODEC_NAME, (T.AUDIO_CODES,), T.AUDIO).each, on_step)

    def describe(self) -> str:
        return f"{self.pipeline.model.checkpoint}, {self.pipeline.settings.max_slots} decode slots"


class ToyCodecModel:
    """codes [batch, 1, frames] -> audio [batch, frames * 400], each request on its own (no weights to batch)."""

    def initialize(self, args):
        pass

    def execute(self, requests):
        responses = []
        for request in requests:
            codes = pb_utils.get_input_tensor_by_name(request, T.AUDIO_CODES).as_numpy()
            audio = np.stack([decode_frames(item) for item in codes])
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(T.AUDIO, audio)]))
        return responses
