"""chatterbox_flow (CPU target): S3Gen's flow on ONNX Runtime, dynamically batched."""

from tritone.ensemble.chatterbox.codec import FLOW_INPUTS
from tritone.ensemble.tensors import MEL
from tritone.ensemble.triton.glue import OnnxBatchModel


class TritonPythonModel(OnnxBatchModel):
    input_names = FLOW_INPUTS
    output_name = MEL
