"""A third model family that lives only in the tests: README's "Adding a model family", worked.

It is registered with `tritone.ensemble.families.registered(FAMILY)` (tests/integration/test_toy_family.py),
not in ensemble/families.py, and is its own folder: spec.py (its Triton models and every limit),
decoding.py (the engine's Family: a deterministic numpy LM, no export, no torch), pipeline.py (request
validation, settings, the engine), export.py (what `Family.export` writes), triton.py (its python-backend
models) and model_repository/ (their one-line model.py glue). Nothing outside this folder names it.
"""

from tritone.ensemble.families import Family

FAMILY = Family("toy", "tests.toy_family.export:export_toy", "toy-checkpoint", "TOY_MODEL",
                package="tests.toy_family")
