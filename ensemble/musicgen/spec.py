"""The MusicGen pipeline's Triton models, declared once for both targets."""

from __future__ import annotations

from tritone.ensemble import tensors as T
from tritone.ensemble.engine.request_fields import sampling_docs
from tritone.ensemble.musicgen.request import MAX_GUIDANCE_SCALE, GenerationParams
from tritone.ensemble.triton.spec import (ModelSpec, Runtime, Step, Tensor, ensemble_targets, stateless_targets,
                                          stream_outputs)

# Decode slots and queue: a slot holds one request's KV cache (see README: memory per slot).
# lm_runtime/dtype auto: bfloat16 on torch where the CPU has AVX512-BF16 or AMX, else float32 on ONNX Runtime
# (ensemble/engine/lm_choice.py; measured in benchmarks/results/bf16/).
CPU_PIPELINE = {"max_slots": "8", "max_queue": "32", "lm_runtime": "auto", "device": "cpu", "dtype": "auto"}
GPU_PIPELINE = {"max_slots": "32", "max_queue": "128", "lm_runtime": "torch", "device": "cuda", "dtype": "float16"}
STREAMING = {"first_frames": "10", "growth": "2.0", "max_chunk_frames": "100", "left_context": "25", "lookahead": "5",
             "min_window": "5", "busy_first_frames": "0", "busy_streams": "8"}
# The first chunk's size while the batch is busy (ensemble/engine/chunker.py), chosen with `python -m tritone.benchmarks
# first-chunk` (benchmarks/results/first_chunk/): on a CPU a step costs more than the audio it makes at every batch
# size, so a shorter first chunk brings first audio forward (small-random, 2 cores, 8 streams: p50 3.0 -> 2.2 s at
# 5 frames) at no cost in throughput, from one stream on; 5 frames (0.1 s) is the shortest measured that holds more
# than a click. GPU: off (not measured).
FIRST_CHUNK = {"cpu": {"busy_first_frames": "5", "busy_streams": "1"}, "gpu": {}}
LIMITS = {"sample_rate": "32000", "min_duration_s": "0.1", "max_duration_s": "30", "max_text_chars": "2000", "max_text_tokens": "256"}


# The shapes the pipeline sends, which the TensorRT profiles must cover (tests check them):
MAX_TEXT_TOKENS = int(LIMITS["max_text_tokens"])
# a codec window: a chunk plus its left context and lookahead, at least min_window frames
MIN_WINDOW = int(STREAMING["min_window"])
MAX_WINDOW = int(STREAMING["max_chunk_frames"]) + int(STREAMING["left_context"]) + int(STREAMING["lookahead"])
CODEBOOKS = 4
SAMPLING_DOCS = sampling_docs(GenerationParams.temperature, GenerationParams.top_k, GenerationParams.top_p)


TEXT_ENCODER = ModelSpec(
    name=T.MUSICGEN_TEXT_ENCODER,
    description="T5 text encoder (+ projection to the decoder width); prompts padded to bucket lengths batch together.",
    inputs=(Tensor(T.INPUT_IDS, "INT64", (-1,)), Tensor(T.ATTENTION_MASK, "INT64", (-1,))),
    outputs=(Tensor(T.ENCODER_HIDDEN_STATES, "FP32", (-1, -1)),),
    targets=stateless_targets({T.INPUT_IDS: ((1,), (16,), (MAX_TEXT_TOKENS,)),
                               T.ATTENTION_MASK: ((1,), (16,), (MAX_TEXT_TOKENS,))}),
)

TOKENIZER = ModelSpec(
    name=T.MUSICGEN_TOKENIZER,
    description=(
        "Prompt text -> token ids and attention mask, padded to a bucket length so that equal shapes batch in the\n"
        "text encoder; a prompt over max_text_tokens is refused (never truncated). Python on every target."
    ),
    inputs=(Tensor(T.TEXT, "BYTES", (1,)),),
    outputs=(Tensor(T.INPUT_IDS, "INT64", (-1,)), Tensor(T.ATTENTION_MASK, "INT64", (-1,))),
    targets={target: Runtime("KIND_CPU", max_batch_size=encoder.max_batch_size,
                             max_queue_delay_us=encoder.max_queue_delay_us,
                             parameters={"max_text_tokens": LIMITS["max_text_tokens"]})
             for target, encoder in TEXT_ENCODER.targets.items()},
)

TEXT_CONDITIONING = ModelSpec(
    name=T.MUSICGEN_TEXT_CONDITIONING,
    description=(
        "Ensemble: prompt text -> musicgen_tokenizer -> musicgen_text_encoder, each dynamically batched: the hidden\n"
        "states the pipeline conditions on and the mask of their real tokens. Clients may send raw text."
    ),
    inputs=(Tensor(T.TEXT, "BYTES", (1,)),),
    outputs=(Tensor(T.ENCODER_HIDDEN_STATES, "FP32", (-1, -1)), Tensor(T.ATTENTION_MASK, "INT64", (-1,))),
    steps=(Step.of(TOKENIZER), Step.of(TEXT_ENCODER)),
    targets=ensemble_targets(TOKENIZER, TEXT_ENCODER),
)

CODEC_DECODER = ModelSpec(
    name=T.MUSICGEN_CODEC_DECODER,
    description="EnCodec decoder: codes [codebooks, frames] -> mono waveform [frames * hop].",
    inputs=(Tensor(T.AUDIO_CODES, "INT64", (-1, -1)),),
    outputs=(Tensor(T.AUDIO, "FP32", (-1,)),),
    targets=stateless_targets({T.AUDIO_CODES: ((CODEBOOKS, MIN_WINDOW), (CODEBOOKS, 45), (CODEBOOKS, MAX_WINDOW))}),
)

PIPELINE = ModelSpec(
    name=T.MUSICGEN,
    description=(
        "Text to music, streamed: one request, one response per audio chunk, the last one flagged final.\n"
        "Decoupled python model holding the in-flight batched LM; calls the text conditioning ensemble and the codec\n"
        "decoder (BLS)."
    ),
    inputs=(
        Tensor(T.TEXT, "BYTES", (1,), doc=f"UTF-8 prompt, at most {LIMITS['max_text_chars']} characters and "
                                             f"{LIMITS['max_text_tokens']} tokens"),
        Tensor(T.DURATION, "FP32", (1,), doc=f"seconds of new audio, in [{LIMITS['min_duration_s']}, "
                                             f"{LIMITS['max_duration_s']}]"),
        Tensor(T.TEMPERATURE, "FP32", (1,), optional=True, doc=SAMPLING_DOCS[T.TEMPERATURE]),
        Tensor(T.TOP_K, "INT32", (1,), optional=True, doc=SAMPLING_DOCS[T.TOP_K]),
        Tensor(T.TOP_P, "FP32", (1,), optional=True, doc=SAMPLING_DOCS[T.TOP_P]),
        Tensor(T.GUIDANCE_SCALE, "FP32", (1,), optional=True,
               doc=f"classifier-free guidance, in [1, {MAX_GUIDANCE_SCALE:g}], 1 disables it; "
                   f"default {GenerationParams.guidance_scale:g}"),
        Tensor(T.SEED, "INT64", (1,), optional=True, doc=SAMPLING_DOCS[T.SEED]),
        Tensor(T.RETURN_CODES, "BOOL", (1,), optional=True, doc=SAMPLING_DOCS[T.RETURN_CODES]),
        Tensor(T.PROMPT_CODES, "INT64", (-1, -1), optional=True,
               doc=f"[codebooks ({CODEBOOKS}), frames]: codes of earlier audio (as return_codes streams them) to "
                   "continue; duration counts the new audio, which alone is returned"),
    ),
    outputs=stream_outputs(),
    decoupled=True,
    targets={
        "cpu": Runtime("KIND_CPU", parameters={**CPU_PIPELINE, **STREAMING, **FIRST_CHUNK["cpu"], **LIMITS}),
        "gpu": Runtime("KIND_GPU", parameters={**GPU_PIPELINE, **STREAMING, **FIRST_CHUNK["gpu"], **LIMITS}),
    },
)

MODELS = (TOKENIZER, TEXT_ENCODER, TEXT_CONDITIONING, CODEC_DECODER, PIPELINE)  # the pipeline last
