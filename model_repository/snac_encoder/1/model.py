"""snac_encoder (CPU target): the exported SNAC encoder on ONNX Runtime, dynamically batched."""

from tritone.ensemble import tensors as T
from tritone.ensemble.triton.glue import OnnxBatchModel


class TritonPythonModel(OnnxBatchModel):
    input_names = (T.AUDIO,)
    output_name = T.AUDIO_CODES
