"""Start a real tritonserver (CPU, from the nvidia-pytriton wheel) and run inference on it."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tritone.serving.triton import TritonServer, TritonServerError, find_tritonserver, free_port
from tritone.serving.processes import alive, group_members

MODEL_PY = textwrap.dedent(
    """
    import numpy as np
    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def execute(self, requests):
            responses = []
            for request in requests:
                x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
                y = (x * 2.0 + 1.0).astype(np.float32)
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", y)]))
            return responses
    """
)

CONFIG = textwrap.dedent(
    """
    name: "affine"
    backend: "python"
    max_batch_size: 8
    input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] } ]
    output [ { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] } ]
    instance_group [ { kind: KIND_CPU count: 1 } ]
    dynamic_batching { }
    """
)


@pytest.fixture(scope="module")
def installation(tmp_path_factory):
    return find_tritonserver(tmp_path_factory.mktemp("backends"))  # missing wheel: fail, never skip


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    model = tmp_path / "repo" / "affine"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.py").write_text(MODEL_PY)
    (model / "config.pbtxt").write_text(CONFIG)
    return tmp_path / "repo"


def test_find_tritonserver_prepares_backend(installation):
    assert installation.binary.is_file() and os.access(installation.binary, os.X_OK)
    python_backend = installation.backend_dir / "python"
    assert (python_backend / "libtriton_python.so").is_file()
    assert os.access(python_backend / "triton_python_backend_stub", os.X_OK)
    assert find_tritonserver(installation.backend_dir.parent) == installation  # reused, not rebuilt


def test_grpc_inference_and_clean_stop(installation, repository, tmp_path):
    server = TritonServer(installation)
    with server:
        server.start(repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                     log_file=tmp_path / "server.log")
        server.wait_ready(timeout=120)
        pid = server.pid
        stub_pids = [p for p in group_members(pid) if p != pid]
        assert stub_pids, "the python backend stub should run in the server's process group"

        client = grpcclient.InferenceServerClient(server.grpc_url)
        try:
            assert client.is_model_ready("affine")
            x = np.array([[0.0, 1.5, -2.0]], dtype=np.float32)
            inp = grpcclient.InferInput("X", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            result = client.infer("affine", [inp], outputs=[grpcclient.InferRequestedOutput("Y")])
            np.testing.assert_allclose(result.as_numpy("Y"), x * 2.0 + 1.0)
        finally:
            client.close()

        code = server.stop()
        assert code == 0, server.log_tail()

    assert not server.is_running()
    assert not alive(pid)
    assert not group_members(pid), "stop() left processes behind"
    assert server.stop() is None  # idempotent


def test_stop_kills_unresponsive_server(installation, repository):
    server = TritonServer(installation)
    server.start(repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port())
    server.wait_ready(timeout=120)
    pid = server.pid
    os.kill(pid, 19)  # SIGSTOP: it can no longer react to SIGINT
    server.stop(timeout=1)
    assert not alive(pid)
    assert not group_members(pid)


def test_wait_ready_reports_startup_failure(installation, tmp_path):
    bad = tmp_path / "bad" / "broken"
    (bad / "1").mkdir(parents=True)
    (bad / "config.pbtxt").write_text('name: "broken"\nbackend: "python"\nthis is not protobuf text\n')
    with TritonServer(installation) as server:
        server.start(tmp_path / "bad", http_port=free_port(), grpc_port=free_port(), metrics_port=free_port())
        with pytest.raises(TritonServerError, match="exited with code"):
            server.wait_ready(timeout=60)
