"""The decoupled `musicgen` Triton model: the engine's glue (ensemble/triton/glue.py) around MusicgenPipeline,
its text encoder and codec decoder called as Triton models (BLS)."""

from __future__ import annotations

from tritone.ensemble import tensors as T
from tritone.ensemble.musicgen.pipeline import MusicgenPipeline, PipelineSettings
from tritone.ensemble.triton.glue import BlsModel, StreamingModel


class MusicgenTritonModel(StreamingModel):
    """The decoupled `musicgen` pipeline model."""

    name = T.MUSICGEN
    SCALARS = (T.TEXT, T.DURATION, T.TEMPERATURE, T.TOP_K, T.TOP_P, T.GUIDANCE_SCALE, T.SEED, T.RETURN_CODES)
    ARRAYS = (T.PROMPT_CODES,)

    def build(self, repository, parameters, bls, on_step):
        return MusicgenPipeline(
            repository,
            PipelineSettings.from_parameters(parameters),
            encode_text=BlsModel(bls, T.MUSICGEN_TEXT_ENCODER, (T.INPUT_IDS, T.ATTENTION_MASK), T.ENCODER_HIDDEN_STATES),
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
