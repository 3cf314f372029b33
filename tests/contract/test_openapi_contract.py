"""schemathesis against the gateway's OpenAPI spec, served for real in front of a real tritonserver:
whatever it generates, the gateway answers without a server error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tritone.gateway.settings import Settings
from tests.integration.stack import run_gateway

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def test_schemathesis_finds_no_server_error(triton_stack, tmp_path):
    settings = Settings(
        triton_grpc_url=triton_stack.grpc_url, triton_metrics_url=triton_stack.metrics_url,
        triton_http_url=f"http://{triton_stack.http_url}", data_dir=tmp_path / "gateway",
        job_workers=0,  # jobs are accepted and queued, not run: this checks the HTTP contract
    )
    with run_gateway(settings) as url:
        result = subprocess.run(
            [str(SCHEMATHESIS), "run", f"{url}/openapi.json",
             "--checks", "not_a_server_error",
             "--max-examples", "25",
             "--generation-deterministic",
             "--request-timeout", "60",
             "--exclude-path-regex", "/unload$",  # unloading the pipeline would fail the other tests' requests
             "--workers", "1"],
            capture_output=True, text=True, timeout=600,
        )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
