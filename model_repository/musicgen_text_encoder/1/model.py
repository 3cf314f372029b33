"""musicgen_text_encoder (CPU target): the exported T5 encoder on ONNX Runtime, dynamically batched."""

from tritone.ensemble import tensors as T
from tritone.ensemble.triton.glue import OnnxBatchModel


class TritonPythonModel(OnnxBatchModel):
    input_names = (T.INPUT_IDS, T.ATTENTION_MASK)
    output_name = T.ENCODER_HIDDEN_STATES
