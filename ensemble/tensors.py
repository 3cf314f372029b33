"""Tensor and model names shared by export, the pipeline spec, the Triton glue and the clients.

Every name that crosses a process boundary (an ONNX graph, a Triton model, a gRPC
request) is spelled once, here.
"""

# --- Triton model names -------------------------------------------------------
MUSICGEN = "musicgen"  # the pipeline a client calls (decoupled, streams audio)
MUSICGEN_TOKENIZER = "musicgen_tokenizer"  # prompt text -> bucketed token ids, mask [dynamic batching]
MUSICGEN_TEXT_ENCODER = "musicgen_text_encoder"  # token ids -> hidden states [dynamic batching]
MUSICGEN_TEXT_CONDITIONING = "musicgen_text_conditioning"  # ensemble: text -> tokenizer -> text encoder
MUSICGEN_CODEC_DECODER = "musicgen_codec_decoder"  # codes -> waveform       [dynamic batching]
ORPHEUS = "orpheus"  # text (+ a voice) to streamed speech (decoupled)
SNAC_ENCODER = "snac_encoder"  # reference audio -> SNAC codes [dynamic batching]
SNAC_DECODER = "snac_decoder"  # SNAC codes -> waveform         [dynamic batching]
CHATTERBOX = "chatterbox"  # text (+ a voice) to streamed speech: T3 LM, flow matching, HiFT (decoupled)
CHATTERBOX_VOICE = "chatterbox_voice"  # reference audio -> a voice's conditioning arrays [dynamic batching]
CHATTERBOX_FLOW = "chatterbox_flow"  # speech tokens + the voice's prompt -> mel   [dynamic batching]
CHATTERBOX_VOCODER = "chatterbox_vocoder"  # mel -> waveform (HiFT)              [dynamic batching]
CHATTERBOX_CODEC = "chatterbox_codec"  # ensemble: chatterbox_flow -> chatterbox_vocoder (a chunk's audio)

# --- musicgen pipeline: request inputs -----------------------------------------
TEXT = "text"  # BYTES [1]   UTF-8 prompt
DURATION = "duration"  # FP32 [1]    seconds of audio to generate
TEMPERATURE = "temperature"  # FP32 [1]    optional
TOP_K = "top_k"  # INT32 [1]   optional, 0 disables
TOP_P = "top_p"  # FP32 [1]    optional, 1.0 disables
GUIDANCE_SCALE = "guidance_scale"  # FP32 [1]    optional, 1.0 disables classifier-free guidance
SEED = "seed"  # INT64 [1]   optional, absent: a random seed
RETURN_CODES = "return_codes"  # BOOL [1]    optional, also stream the generated codes
PROMPT_CODES = "prompt_codes"  # INT64 [codebooks, frames] optional: continue from these codes

# --- speech pipeline: request inputs (also TEXT, TEMPERATURE, TOP_K, TOP_P, SEED, RETURN_CODES) ---
VOICE = "voice"  # BYTES [1]   optional: a speaker the checkpoint was trained on ("tara"), prefixed "tara: text"
REFERENCE_TEXT = "reference_text"  # BYTES [1]  optional: transcript of the reference clip (zero-shot cloning)
REFERENCE_AUDIO = "reference_audio"  # FP32 [samples] optional: the clip, mono at the codec's rate, in [-1, 1]
REFERENCE_CODES = "reference_codes"  # INT64 [7, frames] optional: the clip already encoded (stored voices)
MAX_DURATION = "max_duration"  # FP32 [1]   optional: stop after this many seconds of speech
REPETITION_PENALTY = "repetition_penalty"  # FP32 [1] optional, 1.0 disables
# chatterbox's own (also EXAGGERATION, below): classifier-free guidance weight, min-p sampling
CFG_WEIGHT = "cfg_weight"  # FP32 [1] optional, 0 disables guidance
MIN_P = "min_p"  # FP32 [1] optional, 0 disables

# --- musicgen pipeline: streamed outputs (one response per audio chunk) ---------
AUDIO = "audio"  # FP32 [samples]  mono PCM in [-1, 1] (also the codec decoder's output)
CHUNK_INDEX = "chunk_index"  # INT32 [1]  0, 1, 2, ... in order
SAMPLE_RATE = "sample_rate"  # INT32 [1]
CODES = "codes"  # INT64 [codebooks, frames] the frames this chunk covers (return_codes)
INPUT_TOKENS = "input_tokens"  # INT32 [1]  on the final chunk: the LM's input tokens (prompt / text)
OUTPUT_TOKENS = "output_tokens"  # INT32 [1]  on the final chunk: the tokens the LM sampled

# --- text encoder (ONNX graph and Triton model) -----------------------------------
INPUT_IDS = "input_ids"  # INT64 [batch, tokens]
ATTENTION_MASK = "attention_mask"  # INT64 [batch, tokens]
ENCODER_HIDDEN_STATES = "encoder_hidden_states"  # FP32 [batch, tokens, decoder_hidden]

# --- codec decoder (ONNX graph and Triton model) ----------------------------------
AUDIO_CODES = "audio_codes"  # INT64 [batch, codebooks, frames] -> AUDIO FP32 [batch, samples]
# The SNAC encoder takes AUDIO FP32 [batch, samples] and gives AUDIO_CODES [batch, 7, frames]; its
# decoder the reverse. SNAC's 3 levels (1, 2 and 4 codes per 2048-sample frame) are laid out as the
# 7 rows of an Orpheus frame: [l0, l1a, l2a, l2b, l1b, l2c, l2d] (ensemble/orpheus_format.py).

# --- LM graphs (run inside the musicgen pipeline process, never over the wire) -----
# lm_cross_kv.onnx: ENCODER_HIDDEN_STATES [rows, tokens, hidden] -> CROSS_KEYS, CROSS_VALUES
CROSS_KEYS = "cross_keys"  # FP32 [layers, rows, heads, tokens, head_dim]
CROSS_VALUES = "cross_values"
# musicgen/1/lm_step.onnx: one decode step for rows that may sit at different positions
CODE_IDS = "code_ids"  # INT64 [rows, codebooks] the token fed at this step
POSITIONS = "positions"  # INT64 [rows] index of that token; also how many cache entries are valid
PAST_KEYS = "past_keys"  # FP32 [layers, rows, heads, past, head_dim], entries >= positions[row] ignored
PAST_VALUES = "past_values"
ENCODER_MASK = "encoder_mask"  # INT64 [rows, tokens] 1 = attend (all 0 for the unconditional row)
LOGITS = "logits"  # FP32 [rows, codebooks, vocab]
NEW_KEYS = "new_keys"  # FP32 [layers, rows, heads, head_dim] to store at positions[row]
NEW_VALUES = "new_values"

# orpheus/1/lm_step.onnx: a step of a decoder-only LM where each row feeds up to `width` tokens from
# its own position (chunked prefill and single-token decode share one call)
LOGIT_INDEX = "logit_index"  # INT64 [rows] which of the row's `width` tokens to return logits for
# inputs: INPUT_IDS [rows, width], POSITIONS [rows] (cache entries valid = position of the row's first
#         token), LOGIT_INDEX, PAST_KEYS/PAST_VALUES [layers, rows, kv_heads, past, head_dim]
# outputs: LOGITS [rows, vocab]; NEW_KEYS/NEW_VALUES [layers, rows, kv_heads, width, head_dim]

ONNX_FILE = "model.onnx"  # a stateless model's graph in its version folder

# --- chatterbox ---------------------------------------------------------------------
# chatterbox LM step (T3): as orpheus' lm_step, with the row's input embeddings in place of ids (the family
# embeds: text / speech tables + learned position tables, conditioning embeddings); LOGITS [rows, 8194]
INPUTS_EMBEDS = "inputs_embeds"  # FP32 [rows, width, hidden]
# chatterbox LM conditioning (T3.prepare_conditioning): speaker, speech prompt, emotion -> COND_EMBEDS
SPEAKER_EMB = "speaker_emb"  # FP32 [batch, 256] the voice encoder's speaker embedding
PROMPT_SPEECH_TOKENS = "prompt_speech_tokens"  # INT64 [batch, prompt] the voice's speech tokens (<= 150)
EXAGGERATION = "exaggeration"  # FP32 [batch, 1] emotion exaggeration
COND_EMBEDS = "cond_embeds"  # FP32 [batch, 34, hidden] speaker token, 32 perceiver tokens, emotion token
# chatterbox_flow (S3Gen's flow: ensemble/chatterbox/graphs_flow.py): rows padded on the right, with lengths
SPEECH_TOKENS = "speech_tokens"  # INT64 [batch, tokens] the window's speech tokens (< 6561)
SPEECH_TOKEN_LENGTHS = "speech_token_lengths"  # INT64 [batch]
PROMPT_TOKENS = "prompt_tokens"  # INT64 [batch, prompt] the voice's flow prompt (S3 tokens of its clip)
PROMPT_TOKEN_LENGTHS = "prompt_token_lengths"  # INT64 [batch]
PROMPT_MEL = "prompt_mel"  # FP32 [batch, 2 * prompt, 80] the clip's 24 kHz mel, 2 frames per prompt token
XVECTOR = "xvector"  # FP32 [batch, 192] the clip's CAMPPlus speaker embedding
PROMPT_NOISE = "prompt_noise"  # FP32 [batch, 80, 2 * prompt] starting noise of the prompt's frames (seeded)
FLOW_NOISE = "flow_noise"  # FP32 [batch, 80, 2 * tokens] starting noise of the window's frames (seeded, by position)
MEL = "mel"  # FP32 [batch, 80, frames] the flow's output, the vocoder's input
# chatterbox_vocoder (HiFT): MEL, MEL_LENGTHS, SOURCE_PHASE, SOURCE_NOISE -> AUDIO [batch, 480 * frames], FRAME_PHASE
MEL_LENGTHS = "mel_lengths"  # INT64 [batch]
SOURCE_PHASE = "source_phase"  # FP32 [batch, 9] each harmonic's phase (cycles) before the window's first sample
SOURCE_NOISE = "source_noise"  # FP32 [batch, 480 * frames] one standard normal per sample (seeded, by position)
FRAME_PHASE = "frame_phase"  # FP32 [batch, 9, frames + 1] each harmonic's phase before each frame and after the last
# chatterbox_voice (ensemble/chatterbox/graphs_voice.py): AUDIO [1, samples] (the clip at 24 kHz) + AUDIO_16K ->
# SPEAKER_EMB, PROMPT_SPEECH_TOKENS, PROMPT_TOKENS, PROMPT_MEL, XVECTOR (each [1, ...]: one clip per call)
AUDIO_16K = "audio_16k"  # FP32 [1, samples] the same clip at 16 kHz as soxr (quality HQ) resamples it: T3's inputs
