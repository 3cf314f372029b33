"""Gateway settings: every field can be set from the environment as TRITONE_<FIELD>."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRITONE_")

    host: str = "127.0.0.1"
    port: int = 8080
    triton_grpc_url: str = "127.0.0.1:8001"
    triton_http_url: str = "http://127.0.0.1:8000"
    triton_metrics_url: str = "http://127.0.0.1:8002/metrics"
    triton_timeout_s: float = Field(5.0, description="connect/health timeout; an unreachable Triton is a 503, not a hang")
    model_load_timeout_s: float = Field(300.0, description="how long a load or unload may take")
    stream_timeout_s: float = Field(600.0, description="deadline of one generation stream")
    pipeline: str = "musicgen"

    api_keys: list[str] = Field(default_factory=list, description="Bearer keys; empty: no authentication")
    max_streams_per_key: int = Field(4, description="concurrent generation streams per key (or per client without keys)")

    data_dir: Path = Field(Path(".tritone"), description="job database and results")
    max_queued_jobs: int = 16
    max_job_duration_s: float = Field(300.0, description="longest job; beyond 30 s a job is generated in windows")
    job_workers: int = Field(2, description="jobs generating at once")
    idle_unload_s: float = Field(0.0, description="unload models idle this long (explicit model control); 0: never")
