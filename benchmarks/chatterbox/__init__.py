"""chatterbox's benchmark: text to speech (built-in and cloned voices) against the chatterbox-tts
package's own `ChatterboxTTS.generate` (`python -m tritone.benchmarks run --family chatterbox`)."""

LABEL = "chatterbox"  # its name in results.json ("family", its section) and on the command line
