"""The toy family's Triton models, declared once for both targets, and every limit of the family."""

from __future__ import annotations

from tritone.ensemble import tensors as T
from tritone.ensemble.engine.chunker import ChunkPolicy
from tritone.ensemble.triton.spec import ModelSpec, Runtime, Tensor, stream_outputs

PIPELINE_NAME = "toy"  # the family's name: its decoupled pipeline model
CODEC_NAME = "toy_codec"

VOCAB = 97  # codes 0..96; the prompt is the text's UTF-8 bytes
CODEBOOKS = 1
SAMPLE_RATE = 8000
FRAME_SAMPLES = 400  # 20 frames per second
POLICY = ChunkPolicy(first_frames=2, growth=2.0, max_chunk_frames=8, left_context=1, lookahead=1, min_window=1)
LIMITS = {"sample_rate": str(SAMPLE_RATE), "max_text_chars": "64", "max_duration_s": "2"}
STREAMING = {name: str(getattr(POLICY, name))
             for name in ("first_frames", "growth", "max_chunk_frames", "left_context", "lookahead", "min_window")}
CAPACITY = {"max_slots": "2", "max_queue": "2", "prefill_chunk": "4", "step_tokens": "16"}

# The toy runs in the python backend on both targets (the GPU target renders, nothing there needs a GPU).
CODEC_RUNTIME = Runtime("KIND_CPU", max_batch_size=8, max_queue_delay_us=1000)
PIPELINE_RUNTIME = Runtime("KIND_CPU", parameters={**CAPACITY, **STREAMING, **LIMITS})

CODEC = ModelSpec(
    name=CODEC_NAME,
    description="Toy codec: codes [1, frames] -> audio [frames * 400], each frame the constant code / 97.",
    inputs=(Tensor(T.AUDIO_CODES, "INT64", (CODEBOOKS, -1)),),
    outputs=(Tensor(T.AUDIO, "FP32", (-1,)),),
    targets={"cpu": CODEC_RUNTIME, "gpu": CODEC_RUNTIME},
)

PIPELINE = ModelSpec(
    name=PIPELINE_NAME,
    description="Toy pipeline: text -> its bytes as a prompt -> a deterministic LM on the engine -> toy_codec (BLS).",
    inputs=(
        Tensor(T.TEXT, "BYTES", (1,)),
        Tensor(T.DURATION, "FP32", (1,)),
        Tensor(T.RETURN_CODES, "BOOL", (1,), optional=True),
    ),
    outputs=stream_outputs(CODEBOOKS),
    decoupled=True,
    targets={"cpu": PIPELINE_RUNTIME, "gpu": PIPELINE_RUNTIME},
)

MODELS = (CODEC, PIPELINE)
