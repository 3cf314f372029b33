"""What the MusicGen pipeline needs to know about the exported checkpoint.

Export writes this next to the graphs (`musicgen/1/musicgen.json`); the Triton glue and the
scheduler read it. Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from tritone.ensemble.metadata_file import MetadataFile

METADATA_FILE = "musicgen.json"
LM_STEP_FILE = "lm_step.onnx"
LM_CROSS_KV_FILE = "lm_cross_kv.onnx"
TOKENIZER_DIR = "tokenizer"
CHECKPOINT_DIR = "checkpoint"  # a saved transformers directory, written for tiny-random


@dataclass(frozen=True)
class MusicgenMetadata(MetadataFile):
    FILE = METADATA_FILE

    checkpoint: str  # hub id or directory the weights came from
    sample_rate: int  # Hz
    frame_rate: int  # code frames per second
    hop_length: int  # samples per code frame
    num_codebooks: int
    codebook_size: int  # vocabulary per codebook; also the pad/bos token id
    pad_token_id: int
    num_layers: int
    num_heads: int
    head_dim: int
    hidden_size: int
    max_positions: int  # positional table size: at most this many decode steps
    text_vocab_size: int

    def kv_bytes_per_step(self, rows: int = 2, itemsize: int = 4) -> int:
        """Self-attention cache bytes one decode step adds for `rows` rows (2 with guidance)."""
        return 2 * rows * self.num_layers * self.num_heads * self.head_dim * itemsize
