"""orpheus' benchmark: text to speech against transformers' LlamaForCausalLM + SNAC
(`python -m tritone.benchmarks run --family orpheus`, or `--family speech`)."""

LABEL = "speech"  # its name in results.json ("family", its section) and on the command line (--family speech)
