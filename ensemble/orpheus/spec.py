"""The speech pipeline's Triton models, declared once for both targets."""

from __future__ import annotations

from tritone.ensemble import tensors as T
from tritone.ensemble.orpheus.format import TOKENS_PER_FRAME
from tritone.ensemble.triton.spec import ModelSpec, Runtime, Tensor, stateless_targets, stream_outputs
from tritone.ensemble.engine.request_fields import sampling_docs
from tritone.ensemble.orpheus.pipeline import ORPHEUS_POLICY
from tritone.ensemble.orpheus.request import MAX_REPETITION_PENALTY, OrpheusParams

# step_tokens: a CPU is compute-bound, so a prefill step stays near the cost of a few decode
# steps; a GPU decodes memory-bound, and the padded rows of a wide step cost little there.
CPU_PIPELINE = {"max_slots": "8", "max_queue": "32", "prefill_chunk": "32", "step_tokens": "32",
                "lm_runtime": "auto", "device": "cpu", "dtype": "auto"}  # as MusicGen's: see its spec
GPU_PIPELINE = {"max_slots": "64", "max_queue": "256", "prefill_chunk": "128", "step_tokens": "8192",
                "lm_runtime": "torch",
                "device": "cuda", "dtype": "bfloat16"}
# prefix_cache_bytes: cloned voices' prefilled turns kept, per target. Orpheus 3B's keys/values take 224 KiB a
# token in float32 (112 KiB in bfloat16): a ~900-token voice turn is ~200 MiB on a CPU, ~100 MiB on a GPU, so
# 1 GiB keeps ~5 voices in host memory and 2 GiB ~20 beside the weights on a GPU (a small model: thousands).
PREFIX_CACHE = {"cpu": {"prefix_cache_bytes": str(1 << 30)}, "gpu": {"prefix_cache_bytes": str(2 << 30)}}
STREAMING = ORPHEUS_POLICY.parameters()
# The first chunk while the batch is busy, as MusicGen's (see its spec): 1 frame (85 ms) on a CPU from one stream on
# (small-random, 2 cores, 8 streams: TTFA p50 3.7 -> 2.7 s, throughput unchanged); GPU: off (not measured).
FIRST_CHUNK = {"cpu": {"busy_first_frames": "1", "busy_streams": "1"}, "gpu": {}}
# The speakers orpheus-3b-0.1-ft was fine-tuned on (its random exports take the same names): the config states
# them for clients (the gateway offers them as built-in voices) and the pipeline checks the export's against them.
SPEAKERS = ("tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe")
# the fine-tuned checkpoint's expressive tags: plain text to the tokenizer, passed through unchanged
EXPRESSIVE_TAGS = ("<laugh>", "<chuckle>", "<sigh>", "<cough>", "<sniffle>", "<groan>", "<yawn>", "<gasp>")
LIMITS = {"sample_rate": "24000", "max_text_chars": "4096", "max_text_tokens": "1024", "max_duration_s": "60",
          "min_reference_s": "1", "max_reference_s": "30", "speakers": ",".join(SPEAKERS)}
SAMPLING_DOCS = sampling_docs(OrpheusParams.temperature, OrpheusParams.top_k, OrpheusParams.top_p)

# Shapes the pipeline sends, which the TensorRT profiles must cover:
FRAME_SAMPLES = 2048
MAX_REFERENCE_SAMPLES = int(LIMITS["max_reference_s"]) * int(LIMITS["sample_rate"])
MAX_WINDOW = ORPHEUS_POLICY.max_chunk_frames + ORPHEUS_POLICY.left_context + ORPHEUS_POLICY.lookahead

CODEC_ENCODER = ModelSpec(
    name=T.SNAC_ENCODER,
    description="SNAC 24 kHz encoder: a reference clip [samples] -> codes [7, frames] (Orpheus frame layout).",
    inputs=(Tensor(T.AUDIO, "FP32", (-1,), doc=f"[samples] mono float32 in [-1, 1] at {LIMITS['sample_rate']} Hz"),),
    outputs=(Tensor(T.AUDIO_CODES, "INT64", (TOKENS_PER_FRAME, -1),
                    doc=f"[{TOKENS_PER_FRAME}, frames]: one frame per {FRAME_SAMPLES} samples, Orpheus' layout"),),
    targets=stateless_targets({T.AUDIO: ((FRAME_SAMPLES,), (10 * 24000,), (MAX_REFERENCE_SAMPLES,))}),
)

CODEC_DECODER = ModelSpec(
    name=T.SNAC_DECODER,
    description="SNAC 24 kHz decoder (noise blocks off: deterministic): codes [7, frames] -> audio [frames * 2048].",
    inputs=(Tensor(T.AUDIO_CODES, "INT64", (TOKENS_PER_FRAME, -1)),),
    outputs=(Tensor(T.AUDIO, "FP32", (-1,)),),
    targets=stateless_targets({T.AUDIO_CODES: ((TOKENS_PER_FRAME, 1), (TOKENS_PER_FRAME, 12),
                                               (TOKENS_PER_FRAME, MAX_WINDOW))}),
)

PIPELINE = ModelSpec(
    name=T.ORPHEUS,
    description=(
        "Text to speech, streamed, with a built-in speaker or a cloned voice: one response per audio chunk, the\n"
        "last one flagged final. Decoupled python model holding the in-flight batched LM (chunked prefill);\n"
        "calls the SNAC encoder (reference clips, cached by content hash) and decoder (BLS)."
    ),
    inputs=(
        Tensor(T.TEXT, "BYTES", (1,), doc=f"UTF-8 text to speak, at most {LIMITS['max_text_chars']} characters and "
                                             f"{LIMITS['max_text_tokens']} tokens; the expressive tags "
                                             f"{' '.join(EXPRESSIVE_TAGS)} pass through"),
        Tensor(T.VOICE, "BYTES", (1,), optional=True,
               doc=f"a built-in speaker: {', '.join(SPEAKERS)} (parameter speakers); absent: no speaker prefix"),
        Tensor(T.REFERENCE_TEXT, "BYTES", (1,), optional=True,
               doc="the words spoken in the reference clip; required with reference_audio or reference_codes"),
        Tensor(T.REFERENCE_AUDIO, "FP32", (-1,), optional=True,
               doc=f"[samples] mono float32 in [-1, 1] at {LIMITS['sample_rate']} Hz, {LIMITS['min_reference_s']} to "
                   f"{LIMITS['max_reference_s']} s: a voice to clone (encoded by {T.SNAC_ENCODER}, cached by "
                   "content)"),
        Tensor(T.REFERENCE_CODES, "INT64", (TOKENS_PER_FRAME, -1), optional=True,
               doc=f"[{TOKENS_PER_FRAME}, frames]: the clip already encoded by {T.SNAC_ENCODER} (instead of "
                   "reference_audio)"),
        Tensor(T.MAX_DURATION, "FP32", (1,), optional=True,
               doc=f"seconds of speech at most, in (0, {LIMITS['max_duration_s']}]; default {LIMITS['max_duration_s']}"),
        Tensor(T.TEMPERATURE, "FP32", (1,), optional=True, doc=SAMPLING_DOCS[T.TEMPERATURE]),
        Tensor(T.TOP_K, "INT32", (1,), optional=True, doc=SAMPLING_DOCS[T.TOP_K]),
        Tensor(T.TOP_P, "FP32", (1,), optional=True, doc=SAMPLING_DOCS[T.TOP_P]),
        Tensor(T.REPETITION_PENALTY, "FP32", (1,), optional=True,
               doc=f"in [1, {MAX_REPETITION_PENALTY:g}], 1 disables it; default {OrpheusParams.repetition_penalty:g}"),
        Tensor(T.SEED, "INT64", (1,), optional=True, doc=SAMPLING_DOCS[T.SEED]),
        Tensor(T.RETURN_CODES, "BOOL", (1,), optional=True, doc=SAMPLING_DOCS[T.RETURN_CODES]),
    ),
    outputs=stream_outputs(TOKENS_PER_FRAME),
    decoupled=True,
    targets={
        "cpu": Runtime("KIND_CPU", parameters={**CPU_PIPELINE, **PREFIX_CACHE["cpu"], **STREAMING, **FIRST_CHUNK["cpu"],
                                               **LIMITS}),
        "gpu": Runtime("KIND_GPU", parameters={**GPU_PIPELINE, **PREFIX_CACHE["gpu"], **STREAMING, **FIRST_CHUNK["gpu"],
                                               **LIMITS}),
    },
)

MODELS = (CODEC_ENCODER, CODEC_DECODER, PIPELINE)
