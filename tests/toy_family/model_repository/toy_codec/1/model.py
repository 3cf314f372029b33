"""toy_codec: the test-only family's codec (tests/toy_family/triton.py)."""

from tests.toy_family.triton import ToyCodecModel as TritonPythonModel  # noqa: F401
