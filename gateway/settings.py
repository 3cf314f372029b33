"""Gateway settings: every field can be set from the environment as TRITONE_<FIELD>."""

from __future__ import annotations

from pathlib import Path

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tritone.ensemble import tensors as T
from tritone.gateway.triton_replicas import TargetError, parse_target

# OpenAI's voice names -> Orpheus' fine-tuned speakers, matched by character (register, warmth);
# OpenAI has 13 voices and Orpheus 8, so some speakers stand in for two. An alias applies to a model
# only where it names one of that model's speakers.
OPENAI_VOICES = {
    "alloy": "tara", "ash": "leo", "ballad": "dan", "coral": "mia", "echo": "zac", "fable": "dan",
    "onyx": "leo", "nova": "leah", "sage": "zoe", "shimmer": "jess", "verse": "zac", "marin": "leah", "cedar": "dan",
}
OPENAI_SPEECH_MODELS = ["tts-1", "tts-1-hd", "gpt-4o-mini-tts"]  # OpenAI's names for a speech model (and
# their dated snapshots, "gpt-4o-mini-tts-2025-12-15": an alias followed by -YYYY-MM-DD names it too)


class SpeechModel(BaseModel):
    """How the gateway serves one speech model. Its limits and facts (sample rate, built-in speakers, voice
    clip lengths) are not here: the gateway reads them from the model's Triton config, written by its family spec."""

    model_config = ConfigDict(extra="forbid")

    codec_encoder: str = Field(description="Triton model that encodes a voice clip to this model's codes; a stored "
                                           "voice serves only models whose encoder (and its version) made its codes")
    codes_output: str = Field(T.AUDIO_CODES, description="the codec encoder's output stored as a cloned voice's codes "
                                                         "(audio_codes: SNAC's; prompt_tokens: chatterbox_voice's S3 "
                                                         "tokens, a record of the clip's validation)")
    aliases: list[str] = Field(default_factory=list, description="other names a request's `model` may use")
    voices: list[str] | None = Field(
        None, description="built-in speakers offered; None: the model's own (its config's `speakers`)")
    default_voice: str | None = Field(None, description="the voice when a request names none; None: the first "
                                                        "built-in speaker")


def default_speech_models() -> dict[str, SpeechModel]:
    """Orpheus (the first: a request naming no model, and OpenAI's model names) and Chatterbox. A configured model
    that Triton does not serve is refused with a 503 when named; the others serve as before."""
    return {T.ORPHEUS: SpeechModel(codec_encoder=T.SNAC_ENCODER, aliases=list(OPENAI_SPEECH_MODELS)),
            T.CHATTERBOX: SpeechModel(codec_encoder=T.CHATTERBOX_VOICE, codes_output=T.PROMPT_TOKENS)}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRITONE_")

    host: str = "127.0.0.1"
    port: int = 8080
    triton_grpc_url: str = Field(
        "127.0.0.1:8001", description="Triton's gRPC target: host:port, or several replicas, each stream taking the "
        "next (round_robin): dns:///triton-headless:8001 (every address of the name) or ipv4:10.0.0.1:8001,10.0.0.2:8001")
    triton_http_url: str = "http://127.0.0.1:8000"
    triton_metrics_url: str = "http://127.0.0.1:8002/metrics"
    triton_timeout_s: float = Field(5.0, description="connect/health timeout; an unreachable Triton is a 503, not a hang")
    triton_replica_check_timeout_s: float = Field(
        1.0, description="/readyz asks each Triton replica of triton_grpc_url whether it is ready, waiting this long")
    model_load_timeout_s: float = Field(300.0, description="how long a load or unload may take")
    stream_timeout_s: float = Field(600.0, description="deadline of one generation stream")
    stream_stall_s: float = Field(
        15.0, description="a stream that sends nothing more for this long once audio flows is cancelled and ended "
        "with an error (a dead python stub), and its model reloaded; well below stream_timeout_s")
    reload_unload_wait_s: float = Field(
        20.0, description="reloading an unhealthy model: how long to wait for its unload before loading it again")
    drain_s: float = Field(15.0, description="on SIGTERM: new requests are refused and running streams get this long")
    music_model: str = Field("musicgen", description="Triton model that makes music (decoupled, streams audio)")

    api_keys: list[str] = Field(default_factory=list, description="generation Bearer keys; empty: generation is open")
    admin_keys: list[str] = Field(
        default_factory=list, description="Bearer keys for model control, /metrics and /v1/resources; with api_keys "
        "set and no admin key, those routes are refused to everyone")
    max_streams_per_key: int = Field(4, description="concurrent generation streams per key (or per client without keys)")
    max_anonymous_streams: int = Field(
        16, description="without api_keys: concurrent streams of all clients together (CPU target: 8 + 8 decode slots)")
    forwarded_allow_ips: list[str] = Field(
        default_factory=list, description="proxies (addresses or networks) whose X-Forwarded-For names the client; "
        "empty: trust none, the peer is the client")

    data_dir: Path = Field(Path(".tritone"), description="the SQLite database (jobs, their audio, voices) when "
                                                          "database_url is not set")
    database_url: str | None = Field(
        None, description="the database of jobs, job audio, voices and stream slots: postgresql://user:password@host:"
                          "5432/name (shared by gateway replicas) or sqlite:///path; None: SQLite in data_dir "
                          "(tritone.sqlite3). Migrated to the newest schema at start")
    replica_id: str | None = Field(None, description="this gateway's name on job leases and stream slots; None: "
                                                     "host-pid-random")
    job_lease_s: float = Field(30.0, description="a running job's lease; renewed every third of it, taken over by "
                                                 "another replica once it expires")
    stream_slot_ttl_s: float = Field(30.0, description="a stream's slot in a shared database expires this long after "
                                                       "its last renewal (renewed every third of it)")
    log_format: Literal["text", "json"] = Field("text", description="text (readable) or json (one object per "
                                                                   "line); every line carries the request id")
    max_queued_jobs: int = Field(16, description="queued jobs in all (every replica on the database together)")
    max_queued_jobs_per_key: int = Field(8, description="queued jobs of one key (or client without keys), over every "
                                                        "replica; a key past it gets 429 while others still queue")
    max_job_duration_s: float = Field(300.0, description="longest job; beyond the music model's max_duration_s a job "
                                                         "is generated in windows")
    job_workers: int = Field(2, description="jobs generating at once")
    job_ttl_s: float = Field(3 * 86400.0, description="finished jobs and their audio are deleted this long after "
                                                      "they end (3 days); 0: kept forever")
    job_sweep_interval_s: float = Field(600.0, description="how often expired jobs are looked for (also at startup)")
    job_disk_budget_bytes: int = Field(
        10 * 2**30, description="job audio on disk, plus what queued and running jobs will write, stays under this "
                                "(10 GiB); a job beyond it is refused with 507; 0: no budget")
    job_min_free_bytes: int = Field(
        2**30, description="a job that would leave less free disk than this (1 GiB) is refused with 507")
    idle_unload_s: float = Field(0.0, description="unload models idle this long (explicit model control); 0: never")

    speech_models: dict[str, SpeechModel] = Field(
        default_factory=default_speech_models,
        description="Triton models that speak (decoupled, stream audio), by name; a request's `model` picks one "
                    "(the first when it names none). JSON in the environment: "
                    '{"orpheus": {"codec_encoder": "snac_encoder", "aliases": ["tts-1"]}, '
                    '"chatterbox": {"codec_encoder": "chatterbox_voice", "codes_output": "prompt_tokens"}}')
    speech_voice_aliases: dict[str, str] = Field(
        default_factory=lambda: dict(OPENAI_VOICES), description="OpenAI voice name -> built-in speaker")
    speech_max_sentence_chars: int = Field(300, description="longer sentences are split at word boundaries")
    speech_max_sentence_s: float | None = Field(
        None, description="cap on the seconds of speech per sentence (max_duration); None: the model's own limit")
    voice_max_bytes: int = Field(10 * 2**20, description="largest voice clip upload (413 beyond)")
    voice_min_sample_rate: int = Field(16000, description="clips recorded at a lower rate are refused")
    encode_timeout_s: float = Field(120.0, description="how long encoding a voice clip may take")

    @field_validator("triton_grpc_url")
    @classmethod
    def _readable_target(cls, target: str) -> str:
        try:
            parse_target(target)
        except TargetError as error:
            raise ValueError(str(error)) from None
        return target
