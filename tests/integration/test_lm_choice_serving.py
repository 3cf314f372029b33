"""The CPU target's `lm_runtime: auto` / `dtype: auto` on a real tritonserver (its committed configs, unpinned):
the LM loads as this CPU's flags choose (bfloat16 on torch with AVX512-BF16 or AMX, else float32 on ONNX
Runtime), the load log and the tritone_lm_info metric say which, and a stream is served on it."""

from __future__ import annotations

import asyncio
import re
import urllib.request

import numpy as np
import pytest

from tritone.client import SpeechRequest, stream_speech
from tritone.ensemble import tensors as T
from tritone.ensemble.engine.lm_choice import resolve_lm
from tritone.ensemble.families import FAMILIES
from tritone.serving.container import sync_skeleton
from tritone.serving.triton import TritonServer, free_port

from .stack import family_models

pytestmark = pytest.mark.integration


def lm_info(metrics_url: str) -> list[dict[str, str]]:
    """The labels of every tritone_lm_info series whose value is 1."""
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    return [dict(re.findall(r'(\w+)="([^"]*)"', line)) for line in text.splitlines()
            if line.startswith("tritone_lm_info{") and line.rsplit(" ", 1)[1] == "1"]


async def collect(url: str, request: SpeechRequest):
    return [chunk async for chunk in stream_speech(url, request, max_chars=None)]


def test_auto_loads_the_lm_this_cpu_s_flags_choose_and_says_which(tmp_path):
    expected = resolve_lm("auto", "cpu", "auto")  # on this machine's /proc/cpuinfo
    repository = tmp_path / "model_repository"
    sync_skeleton(repository)  # the committed configs: cpu.pbtxt says auto
    FAMILIES[T.ORPHEUS].export("tiny-random", repository, force=True)
    log_file = tmp_path / "tritonserver.log"
    server = TritonServer()
    server.start(repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                 model_config_name="cpu", model_control_mode="explicit", load_models=list(family_models(T.ORPHEUS)),
                 log_file=log_file)
    try:
        server.wait_ready(timeout=180)
        assert lm_info(server.metrics_url) == [{"model": T.ORPHEUS, "runtime": expected.runtime,
                                                "dtype": expected.dtype}]
        assert f"{T.ORPHEUS} ready: LM step on {expected}; " in log_file.read_text()
        chunks = asyncio.run(collect(server.grpc_url, SpeechRequest(text="Hello there.", voice="tara",
                                                                    max_duration=0.5, top_k=1, return_codes=True)))
        codes = np.concatenate([chunk.codes for chunk in chunks], axis=1)
        assert codes.shape[0] == 7 and 1 <= codes.shape[1] <= 5  # 0.5 s of 85 ms frames at most
        assert sum(chunk.audio.size for chunk in chunks) == codes.shape[1] * 2048
    finally:
        server.stop()
