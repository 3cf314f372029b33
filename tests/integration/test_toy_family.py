"""README's "Adding a model family", proven: a third family that exists only in tests/toy_family/ is
registered for this test (`families.registered`), rendered with the render CLI, served by a real
tritonserver (python backend, CPU) and streams one request over gRPC, with exact codes and audio.
Registering it touched nothing outside its folder: the registry is as before afterwards, the rendered
repository holds exactly its models, and no module outside tests/toy_family names it."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tritone.client.request import tensor_input, text_input
from tritone.client.stream import stream_chunks
from tritone.ensemble import tensors as T
from tritone.ensemble.families import FAMILIES, registered
from tritone.ensemble.triton import render
from tritone.serving.container import sync_skeleton
from tritone.serving.triton import TritonServer, free_port

from tests.toy_family import FAMILY

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
TOY = ROOT / "tests" / "toy_family"

# "toy" as bytes [116, 111, 121] through next_token(history) = (7 * sum + len) % 97, 20 frames (1 s at 20 Hz)
CODES = [14, 16, 32, 63, 20, 64, 28, 31, 55, 53, 37, 6, 49, 5, 41, 38, 14, 16, 32, 63]
CHUNK_FRAMES = [2, 4, 8, 6]  # first_frames 2, growth 2, at most 8; the rest with the final flag
REPOSITORY_FILES = sorted([
    "toy/1/model.py", "toy/1/toy.json", "toy/config.pbtxt", "toy/configs/cpu.pbtxt",
    "toy_codec/1/model.py", "toy_codec/config.pbtxt", "toy_codec/configs/cpu.pbtxt",
])


async def stream_one(url: str) -> list:
    inputs = [text_input(T.TEXT, "toy"), tensor_input(T.DURATION, "FP32", np.array([1.0], np.float32)),
              tensor_input(T.RETURN_CODES, "BOOL", np.array([True]))]
    return [chunk async for chunk in stream_chunks(url, "toy", inputs, expect_codes=True, timeout=30)]


@pytest.mark.timeout(60)
def test_a_family_registered_only_in_tests_renders_serves_and_streams_one_request(tmp_path, monkeypatch):
    before = dict(FAMILIES)
    repository = tmp_path / "model_repository"
    with registered(FAMILY) as family:
        assert FAMILIES["toy"] is family and family.package == "tests.toy_family"
        assert [spec.name for spec in family.models()] == ["toy_codec", "toy"]  # the pipeline last
        sync_skeleton(repository, TOY / "model_repository")  # its model.py glue
        assert render.main(["--repository", str(repository), "--family", "toy"]) == 0
        assert render.main(["--repository", str(repository), "--family", "toy", "--check"]) == 0
        family.export(family.default_checkpoint, repository, force=True)
        assert sorted(str(p.relative_to(repository)) for p in repository.rglob("*") if p.is_file()) == REPOSITORY_FILES

        # the python stubs import tests.toy_family: the repository root goes on their path
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        server = TritonServer()
        server.start(repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                     model_config_name="cpu", model_control_mode="explicit", load_models=["*"],
                     log_file=tmp_path / "tritonserver.log")
        try:
            server.wait_ready(timeout=40)
            chunks = asyncio.run(stream_one(server.grpc_url))
        finally:
            started = time.monotonic()
            server.stop()
            stop_s = time.monotonic() - started
    assert FAMILIES == before and "toy" not in FAMILIES

    assert [chunk.index for chunk in chunks] == [0, 1, 2, 3]
    assert [chunk.final for chunk in chunks] == [False, False, False, True]  # exactly one final flag, last
    assert {chunk.sample_rate for chunk in chunks} == {8000}
    assert [chunk.codes.shape for chunk in chunks] == [(1, frames) for frames in CHUNK_FRAMES]
    assert [len(chunk.audio) for chunk in chunks] == [frames * 400 for frames in CHUNK_FRAMES]
    assert np.concatenate([chunk.codes for chunk in chunks], axis=1).tolist() == [CODES]
    audio = np.concatenate([chunk.audio for chunk in chunks])
    assert audio.dtype == np.float32 and len(audio) == 8000
    np.testing.assert_array_equal(audio, np.repeat(np.array(CODES, np.float32) / np.float32(97), 400))
    assert stop_s < 10, f"tritonserver took {stop_s:.0f} s to stop"


def test_the_toy_family_is_named_only_inside_its_own_folder():
    pattern = re.compile(r"toy_family|\btoy(?:_codec)?\b['\"]")
    folders = ("ensemble", "export", "serving", "model_repository", "gateway", "benchmarks", "client")
    named = [str(path.relative_to(ROOT)) for folder in folders for path in (ROOT / folder).rglob("*")
             if path.suffix in (".py", ".pbtxt") and pattern.search(path.read_text())]
    assert named == []
    import tests.toy_family.pipeline  # noqa: F401  (its modules, imported: every one lives in its folder)

    modules = {name: module for name, module in sys.modules.items() if name.startswith("tests.toy_family")}
    assert {"tests.toy_family.spec", "tests.toy_family.decoding", "tests.toy_family.export"} <= set(modules)
    assert all(Path(module.__file__).is_relative_to(TOY) for module in modules.values())
