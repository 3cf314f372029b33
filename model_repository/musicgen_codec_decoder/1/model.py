"""musicgen_codec_decoder (CPU target): the exported EnCodec decoder on ONNX Runtime, dynamically batched."""

from tritone.ensemble import tensors as T
from tritone.ensemble.triton.glue import OnnxBatchModel


class TritonPythonModel(OnnxBatchModel):
    input_names = (T.AUDIO_CODES,)
    output_name = T.AUDIO
