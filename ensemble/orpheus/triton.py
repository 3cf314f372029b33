"""The decoupled `orpheus` Triton model: the engine's glue (ensemble/triton/glue.py) around OrpheusPipeline, its
SNAC encoder and decoder called as Triton models (BLS)."""

from __future__ import annotations

from tritone.ensemble import tensors as T
from tritone.ensemble.orpheus.pipeline import OrpheusPipeline, OrpheusSettings
from tritone.ensemble.triton.glue import BlsModel, StreamingModel


class OrpheusTritonModel(StreamingModel):
    """The decoupled `orpheus` speech pipeline model."""

    name = T.ORPHEUS
    SCALARS = (T.TEXT, T.VOICE, T.REFERENCE_TEXT, T.MAX_DURATION, T.TEMPERATURE, T.TOP_K, T.TOP_P,
               T.REPETITION_PENALTY, T.SEED, T.RETURN_CODES)
    ARRAYS = (T.REFERENCE_AUDIO, T.REFERENCE_CODES)

    def build(self, repository, parameters, bls, on_step):
        return OrpheusPipeline(
            repository,
            OrpheusSettings.from_parameters(parameters),
            encode_audio=BlsModel(bls, T.SNAC_ENCODER, (T.AUDIO,), T.AUDIO_CODES),
            decode_codes=BlsModel(bls, T.SNAC_DECODER, (T.AUDIO_CODES,), T.AUDIO).each,
            on_step=on_step,
        )

    def describe(self) -> str:
        settings, model = self.pipeline.settings, self.pipeline.model
        return (f"{model.checkpoint}, {settings.max_slots} decode slots, queue {settings.max_queue}, prefill "
                f"up to {settings.prefill_chunk} tokens per step ({settings.step_tokens} per step in all), voices: {', '.join(model.voices) or 'cloned only'}")
