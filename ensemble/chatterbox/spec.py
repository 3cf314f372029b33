"""The Chatterbox pipeline's Triton models, declared once for both targets."""

from __future__ import annotations

from dataclasses import fields, replace

from tritone.ensemble import tensors as T
from tritone.ensemble.chatterbox.codec import CHATTERBOX_POLICY, CODEC_INPUTS, CODEC_OUTPUTS, FLOW_INPUTS
from tritone.ensemble.chatterbox.metadata import BUILTIN_VOICE
from tritone.ensemble.chatterbox.request import (MAX_CFG_WEIGHT, MAX_EXAGGERATION, MAX_REPETITION_PENALTY,
                                                 ChatterboxLimits, ChatterboxParams)
from tritone.ensemble.engine.request_fields import sampling_docs
from tritone.ensemble.triton.spec import (ModelSpec, Runtime, Step, Tensor, ensemble_targets, stateless_targets,
                                          stream_outputs)

# T3 is a 0.5B Llama: on a CPU a step is compute-bound, so a prefill step stays near a few decode steps' cost.
CPU_PIPELINE = {"max_slots": "8", "max_queue": "32", "prefill_chunk": "32", "step_tokens": "64",
                "lm_runtime": "auto", "device": "cpu", "dtype": "auto"}  # as the other families': see MusicGen's spec
GPU_PIPELINE = {"max_slots": "64", "max_queue": "256", "prefill_chunk": "128", "step_tokens": "8192",
                "lm_runtime": "torch", "device": "cuda", "dtype": "bfloat16"}
# prefix_cache_bytes: voices' prefilled conditioning (34 inputs, both guidance rows) kept, per target: 16 MiB a
# voice and exaggeration for the released T3 in float32 (30 layers, 16 KV heads of 64: 240 KiB an input and row),
# so 256 MiB keeps 16 of them on a CPU.
PREFIX_CACHE = {"cpu": {"prefix_cache_bytes": str(256 << 20)}, "gpu": {"prefix_cache_bytes": str(1 << 30)}}
# codec_batch: the windows the pipeline sends chatterbox_codec at once, its max_batch_size on each target (below)
STREAMING = CHATTERBOX_POLICY.parameters()
# speakers: the built-in voice every export has (the checkpoint's conds.pt; the random ones make one), for clients
LIMITS = {"sample_rate": "24000", "speakers": BUILTIN_VOICE,
          **{f.name: str(getattr(ChatterboxLimits(), f.name)) for f in fields(ChatterboxLimits)}}
SAMPLING_DOCS = sampling_docs(ChatterboxParams.temperature, ChatterboxParams.top_k, ChatterboxParams.top_p)
DEFAULTS = ChatterboxParams(text="", max_duration=ChatterboxLimits.max_duration_s)

# Shapes the pipeline sends, which the TensorRT profiles must cover:
SAMPLE_RATE = int(LIMITS["sample_rate"])
MEL_BINS, HARMONICS, MEL_SAMPLES = 80, 9, 480
MAX_PROMPT_TOKENS = 10 * 25  # the flow's prompt: the clip's first 10 s of S3 tokens
MAX_WINDOW = CHATTERBOX_POLICY.max_chunk_frames + CHATTERBOX_POLICY.left_context + CHATTERBOX_POLICY.lookahead


def _row_length(name: str) -> Tensor:
    return Tensor(name, "INT64", (1,), reshape=())


VOICE = ModelSpec(
    name=T.CHATTERBOX_VOICE,
    description="A reference clip -> a Chatterbox voice: T3's speaker embedding and speech prompt, the flow's prompt\n"
                "tokens, mel and x-vector (computed once per clip: the pipeline and the gateway cache them).",
    inputs=(Tensor(T.AUDIO, "FP32", (-1,), doc=f"[samples] mono float32 in [-1, 1] at {SAMPLE_RATE} Hz"),),
    outputs=(Tensor(T.SPEAKER_EMB, "FP32", (256,)), Tensor(T.PROMPT_SPEECH_TOKENS, "INT64", (-1,)),
             Tensor(T.PROMPT_TOKENS, "INT64", (-1,)), Tensor(T.PROMPT_MEL, "FP32", (-1, MEL_BINS)),
             Tensor(T.XVECTOR, "FP32", (192,))),
    # python on both targets: its 16 kHz input is made with soxr first, and it runs once per clip
    targets={target: Runtime("KIND_CPU", max_batch_size=8, max_queue_delay_us=2000) for target in ("cpu", "gpu")},
)

FLOW = ModelSpec(
    name=T.CHATTERBOX_FLOW,
    description="S3Gen's flow: a window of speech tokens + the voice's prompt (tokens, mel, x-vector) + seeded noise\n"
                "-> the window's mel (10 Euler steps, guidance inside); rows padded on the right, with lengths.",
    inputs=(Tensor(T.SPEECH_TOKENS, "INT64", (-1,)), _row_length(T.SPEECH_TOKEN_LENGTHS),
            Tensor(T.PROMPT_TOKENS, "INT64", (-1,)), _row_length(T.PROMPT_TOKEN_LENGTHS),
            Tensor(T.PROMPT_MEL, "FP32", (-1, MEL_BINS)), Tensor(T.XVECTOR, "FP32", (192,)),
            Tensor(T.PROMPT_NOISE, "FP32", (MEL_BINS, -1)), Tensor(T.FLOW_NOISE, "FP32", (MEL_BINS, -1))),
    outputs=(Tensor(T.MEL, "FP32", (MEL_BINS, -1)),),
    targets=stateless_targets({
        T.SPEECH_TOKENS: ((1,), (30,), (MAX_WINDOW,)), T.SPEECH_TOKEN_LENGTHS: ((), (), ()),
        T.PROMPT_TOKENS: ((1,), (150,), (MAX_PROMPT_TOKENS,)), T.PROMPT_TOKEN_LENGTHS: ((), (), ()),
        T.PROMPT_MEL: ((2, MEL_BINS), (300, MEL_BINS), (2 * MAX_PROMPT_TOKENS, MEL_BINS)),
        T.XVECTOR: ((192,), (192,), (192,)),
        T.PROMPT_NOISE: ((MEL_BINS, 2), (MEL_BINS, 300), (MEL_BINS, 2 * MAX_PROMPT_TOKENS)),
        T.FLOW_NOISE: ((MEL_BINS, 2), (MEL_BINS, 60), (MEL_BINS, 2 * MAX_WINDOW)),
    }),
)

VOCODER = ModelSpec(
    name=T.CHATTERBOX_VOCODER,
    description="HiFT: mel -> 24 kHz audio; its sine source starts at source_phase and returns each frame's phase,\n"
                "so the next window of a stream continues it; rows padded on the right, with lengths.",
    inputs=(Tensor(T.MEL, "FP32", (MEL_BINS, -1)), _row_length(T.MEL_LENGTHS),
            Tensor(T.SOURCE_PHASE, "FP32", (HARMONICS,)), Tensor(T.SOURCE_NOISE, "FP32", (-1,))),
    outputs=(Tensor(T.AUDIO, "FP32", (-1,)), Tensor(T.FRAME_PHASE, "FP32", (HARMONICS, -1))),
    targets=stateless_targets({
        T.MEL: ((MEL_BINS, 2), (MEL_BINS, 60), (MEL_BINS, 2 * MAX_WINDOW)), T.MEL_LENGTHS: ((), (), ()),
        T.SOURCE_PHASE: ((HARMONICS,), (HARMONICS,), (HARMONICS,)),
        T.SOURCE_NOISE: ((2 * MEL_SAMPLES,), (60 * MEL_SAMPLES,), (2 * MAX_WINDOW * MEL_SAMPLES,)),
    }),
)

# the ensemble passes per-row lengths as they come ([batch, 1]); its step models reshape them
_TENSORS = {tensor.name: replace(tensor, reshape=None) for tensor in FLOW.inputs + VOCODER.inputs + VOCODER.outputs}

CODEC = ModelSpec(
    name=T.CHATTERBOX_CODEC,
    description="Ensemble: a window of speech tokens + the voice -> chatterbox_flow -> chatterbox_vocoder -> audio\n"
                "(and the vocoder's phase at each frame), each step dynamically batched: what the pipeline calls per chunk.",
    inputs=tuple(_TENSORS[name] for name in CODEC_INPUTS),
    outputs=tuple(_TENSORS[name] for name in CODEC_OUTPUTS),
    steps=(Step(FLOW.name, {name: name for name in FLOW_INPUTS}, {T.MEL: T.MEL}), Step.of(VOCODER)),
    targets=ensemble_targets(FLOW, VOCODER),
)

CODEC_BATCH = {target: {"codec_batch": str(runtime.max_batch_size)} for target, runtime in CODEC.targets.items()}

PIPELINE = ModelSpec(
    name=T.CHATTERBOX,
    description=(
        "Text to speech, streamed, in the checkpoint's voice or a cloned one: one response per audio chunk, the last\n"
        "one flagged final. Decoupled python model holding the in-flight batched T3 LM (guidance rows, chunked\n"
        "prefill); calls chatterbox_voice (reference clips, cached by content) and chatterbox_codec (BLS)."
    ),
    inputs=(
        Tensor(T.TEXT, "BYTES", (1,), doc=f"UTF-8 text to speak, at most {LIMITS['max_text_chars']} characters and "
                                             f"{LIMITS['max_text_tokens']} tokens"),
        Tensor(T.VOICE, "BYTES", (1,), optional=True,
               doc=f"a built-in voice: {BUILTIN_VOICE} (parameter speakers); absent with no reference_audio: it"),
        Tensor(T.REFERENCE_AUDIO, "FP32", (-1,), optional=True,
               doc=f"[samples] mono float32 in [-1, 1] at {SAMPLE_RATE} Hz, {LIMITS['min_reference_s']} to "
                   f"{LIMITS['max_reference_s']} s: a voice to clone (its first 10 s; no transcript needed)"),
        Tensor(T.EXAGGERATION, "FP32", (1,), optional=True,
               doc=f"emotion exaggeration in [0, {MAX_EXAGGERATION:g}]; default {DEFAULTS.exaggeration:g}"),
        Tensor(T.CFG_WEIGHT, "FP32", (1,), optional=True,
               doc=f"classifier-free guidance in [0, {MAX_CFG_WEIGHT:g}], 0 disables it; default "
                   f"{DEFAULTS.cfg_weight:g}"),
        Tensor(T.MAX_DURATION, "FP32", (1,), optional=True,
               doc=f"seconds of speech at most, in (0, {LIMITS['max_duration_s']}]; default {LIMITS['max_duration_s']}"),
        Tensor(T.TEMPERATURE, "FP32", (1,), optional=True, doc=SAMPLING_DOCS[T.TEMPERATURE]),
        Tensor(T.TOP_K, "INT32", (1,), optional=True, doc=SAMPLING_DOCS[T.TOP_K]),
        Tensor(T.TOP_P, "FP32", (1,), optional=True, doc=SAMPLING_DOCS[T.TOP_P]),
        Tensor(T.MIN_P, "FP32", (1,), optional=True, doc=f"in [0, 1], 0 disables it; default {DEFAULTS.min_p:g}"),
        Tensor(T.REPETITION_PENALTY, "FP32", (1,), optional=True,
               doc=f"in [1, {MAX_REPETITION_PENALTY:g}], 1 disables it; default {DEFAULTS.repetition_penalty:g}"),
        Tensor(T.SEED, "INT64", (1,), optional=True, doc=SAMPLING_DOCS[T.SEED]),
        Tensor(T.RETURN_CODES, "BOOL", (1,), optional=True, doc=SAMPLING_DOCS[T.RETURN_CODES]),
    ),
    outputs=stream_outputs(1),
    decoupled=True,
    targets={
        "cpu": Runtime("KIND_CPU", parameters={**CPU_PIPELINE, **CODEC_BATCH["cpu"], **PREFIX_CACHE["cpu"], **STREAMING,
                                               **LIMITS}),
        "gpu": Runtime("KIND_GPU", parameters={**GPU_PIPELINE, **CODEC_BATCH["gpu"], **PREFIX_CACHE["gpu"], **STREAMING,
                                               **LIMITS}),
    },
)

MODELS = (VOICE, FLOW, VOCODER, CODEC, PIPELINE)  # the pipeline last
