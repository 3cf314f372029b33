"""MusicGen's python-backend models: the decoupled `musicgen` pipeline (the engine's glue, ensemble/triton/glue.py,
around MusicgenPipeline, its text conditioning ensemble and codec decoder called as Triton models, BLS) and the
`musicgen_tokenizer`, the first step of the `musicgen_text_conditioning` ensemble."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from tritone.ensemble import tensors as T
from tritone.ensemble.musicgen.metadata import TOKENIZER_DIR
from tritone.ensemble.musicgen.pipeline import MusicgenPipeline, PipelineSettings
from tritone.ensemble.musicgen.request import InvalidRequest
from tritone.ensemble.musicgen.text_conditioning import PromptTokenizer, prompts_of
from tritone.ensemble.triton.glue import BlsModel, StreamingModel, config_parameters, refused


class TextConditioningBls:
    """Prompts -> (hidden states, mask) from the `musicgen_text_conditioning` ensemble, all of them in one request;
    the tokenizer's refusal (a prompt too long) is the request's InvalidRequest, word for word."""

    def __init__(self, bls):
        self.model = BlsModel(bls, T.MUSICGEN_TEXT_CONDITIONING, (T.TEXT,), (T.ENCODER_HIDDEN_STATES, T.ATTENTION_MASK),
                              passes_refusals=True)

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        return self.model(np.array([[text.encode("utf-8")] for text in texts], dtype=object))


class MusicgenTritonModel(StreamingModel):
    """The decoupled `musicgen` pipeline model."""

    name = T.MUSICGEN
    SCALARS = (T.TEXT, T.DURATION, T.TEMPERATURE, T.TOP_K, T.TOP_P, T.GUIDANCE_SCALE, T.SEED, T.RETURN_CODES)
    ARRAYS = (T.PROMPT_CODES,)

    def build(self, repository, parameters, bls, on_step):
        return MusicgenPipeline(
            repository,
            PipelineSettings.from_parameters(parameters),
            condition_text=TextConditioningBls(bls),
            decode_codes=BlsModel(bls, T.MUSICGEN_CODEC_DECODER, (T.AUDIO_CODES,), T.AUDIO).each,
            on_step=on_step,
        )

    def describe(self) -> str:
        settings, model = self.pipeline.settings, self.pipeline.model
        slot_mb = self.pipeline.family.slot_bytes(settings.limits.max_duration_s) / 2**20
        return (f"{model.checkpoint}, {settings.max_slots} decode slots (KV cache up to {slot_mb:.0f} MiB each at "
                f"{settings.limits.max_duration_s:g}s with guidance), queue {settings.max_queue}")

    def submit(self, raw, stream):
        self.pipeline.submit([(self.pipeline.validate(raw), stream)])


class MusicgenTokenizerTritonModel:
    """The `musicgen_tokenizer` model: each request's prompts [n, 1] -> input_ids, attention_mask [n, bucket]
    (text_conditioning.PromptTokenizer); a request with a prompt over max_text_tokens is refused alone."""

    def initialize(self, args):
        directory = Path(args["model_repository"]) / args["model_version"] / TOKENIZER_DIR
        self.tokenizer = PromptTokenizer(directory, int(config_parameters(args)["max_text_tokens"]))

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                texts = prompts_of(pb_utils.get_input_tensor_by_name(request, T.TEXT).as_numpy())
                input_ids, mask = self.tokenizer(texts)
            except InvalidRequest as error:
                responses.append(refused(error))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(T.INPUT_IDS, input_ids), pb_utils.Tensor(T.ATTENTION_MASK, mask)]))
        return responses
