"""What the speech pipeline needs to know about an exported Orpheus-format checkpoint.

Export writes it next to the LM graph (`orpheus/1/speech.json`); the engine, the Triton glue
and the gateway read it. Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tritone.ensemble.orpheus.format import TOKENS_PER_FRAME, OrpheusFormat
from tritone.ensemble.metadata_file import MetadataFile

METADATA_FILE = "speech.json"
LM_STEP_FILE = "lm_step.onnx"
TOKENIZER_DIR = "tokenizer"
CHECKPOINT_DIR = "checkpoint"  # the LM as a transformers directory (written for the random checkpoints)
CODEC_DIR = "codec"  # the SNAC config.json + pytorch_model.bin used (written for the random checkpoints)


@dataclass(frozen=True)
class OrpheusMetadata(MetadataFile):
    FILE = METADATA_FILE

    checkpoint: str  # hub id or directory of the LM
    codec_checkpoint: str  # hub id or directory of the SNAC codec
    sample_rate: int  # 24000
    frame_samples: int  # samples per 7-token frame (SNAC hop 512 x 4 = 2048)
    codebook_size: int  # per SNAC level (4096)
    text_vocab_size: int  # Orpheus' tokeniser_length (128256)
    bos_token_id: int
    eot_token_id: int
    vocab_size: int  # LM output width
    num_layers: int
    num_kv_heads: int
    head_dim: int
    hidden_size: int
    max_positions: int  # the LM's context: prompt + answer tokens
    voices: tuple[str, ...] = field(default=())  # speakers the checkpoint was fine-tuned on ("tara", ...)

    @property
    def format(self) -> OrpheusFormat:
        return OrpheusFormat(self.text_vocab_size, self.bos_token_id, self.eot_token_id, self.codebook_size,
                             self.vocab_size)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.frame_samples

    @property
    def tokens_per_second(self) -> float:
        """LM tokens per second of audio: the decode rate real time needs (about 82 at 24 kHz)."""
        return self.frame_rate * TOKENS_PER_FRAME

    def kv_bytes_per_token(self, itemsize: int = 4) -> int:
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * itemsize
