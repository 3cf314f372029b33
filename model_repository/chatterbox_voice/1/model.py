"""chatterbox_voice (CPU target): a reference clip -> a Chatterbox voice's arrays, on ONNX Runtime, dynamically batched."""

from tritone.ensemble import tensors as T
from tritone.ensemble.chatterbox.voice import FIELDS
from tritone.ensemble.triton.glue import OnnxBatchModel


class TritonPythonModel(OnnxBatchModel):
    input_names = (T.AUDIO,)
    output_names = FIELDS
