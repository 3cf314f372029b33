"""chatterbox_vocoder (CPU target): HiFT on ONNX Runtime, dynamically batched."""

from tritone.ensemble.chatterbox.codec import CODEC_OUTPUTS, VOCODER_INPUTS
from tritone.ensemble.triton.glue import OnnxBatchModel


class TritonPythonModel(OnnxBatchModel):
    input_names = VOCODER_INPUTS
    output_names = CODEC_OUTPUTS
