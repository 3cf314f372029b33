"""musicgen's benchmark: text to music against transformers' MusicgenForConditionalGeneration
(`python -m tritone.benchmarks run --family musicgen`, the default)."""

LABEL = "music"  # its name in results.json ("family") and on the command line (--family music)
