"""toy: the test-only family's streaming pipeline (tests/toy_family/triton.py)."""

from tests.toy_family.triton import ToyTritonModel as TritonPythonModel  # noqa: F401
