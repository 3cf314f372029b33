"""snac_decoder (CPU target): the exported SNAC decoder on ONNX Runtime, dynamically batched."""

from ensemble import tensors as T
from ensemble.triton_glue import OnnxBatchModel


class TritonPythonModel(OnnxBatchModel):
    input_names = (T.AUDIO_CODES,)
    output_name = T.AUDIO
