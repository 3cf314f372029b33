"""What the Chatterbox pipeline needs to know about an exported checkpoint.

Export writes it next to the LM graphs (`chatterbox/1/chatterbox.json`); the engine, the Triton glue
and the gateway read it. Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tritone.ensemble.metadata_file import MetadataFile

METADATA_FILE = "chatterbox.json"
TOKENIZER_FILE = "tokenizer.json"
BUILTIN_VOICE = "default"  # the checkpoint's own voice (its conds.pt)
VOICES_DIR = "voices"  # the checkpoint's built-in voices, one .npz of conditioning arrays each
CHECKPOINT_DIR = "checkpoint"  # the checkpoint's files (written for the random checkpoints)


@dataclass(frozen=True)
class ChatterboxMetadata(MetadataFile):
    FILE = METADATA_FILE

    checkpoint: str  # hub id or directory
    sample_rate: int  # 24000
    token_rate: int  # speech tokens per second (25)
    frame_samples: int  # audio samples per speech token (960: 2 mel frames of 480)
    speech_codes: int  # S3 tokenizer codes (6561): tokens >= this are never decoded
    speech_vocab: int  # T3's speech vocabulary (8194: codes + start/stop + spare)
    start_speech: int  # 6561
    stop_speech: int  # 6562
    text_vocab: int  # 704 for the English model
    start_text: int  # 255
    stop_text: int  # 0
    max_text_tokens: int  # text position table size - 2
    max_speech_tokens: int  # speech position table size - 4
    num_layers: int
    num_kv_heads: int
    head_dim: int
    hidden_size: int
    speaker_embed_size: int  # the voice encoder's embedding (256)
    xvector_size: int  # the flow's speaker embedding (192)
    mel_bins: int  # 80
    prompt_tokens: int  # most tokens of the T3 speech prompt (150)
    voices: tuple[str, ...] = field(default=())  # built-in voices (the checkpoint's conds.pt: "default")

    def kv_bytes_per_token(self, itemsize: int = 4) -> int:
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * itemsize
