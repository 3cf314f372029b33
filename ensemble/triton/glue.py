"""Glue between Triton's python backend and the pure-Python pipeline.

Imported only inside a Triton python-backend stub (`triton_python_backend_utils` exists there).
The `model.py` files are a few lines that pick their class: a stateless model subclasses
`OnnxBatchModel` here; a family's decoupled pipeline model (`ensemble/<family>/triton.py`)
subclasses `StreamingModel`.
"""

from __future__ import annotations

import asyncio
import math
import json
import logging
import re
import threading
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from tritone.ensemble import tensors as T
from tritone.ensemble.engine.request_fields import InvalidRequest
from tritone.ensemble.engine.onnx_runtime import open_session
from tritone.ensemble.engine.scheduler import AtCapacity, Chunk, EngineStats
from tritone.ensemble.triton.spec import knobs
from tritone.serving import log_format

log = logging.getLogger("tritone")
FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


def error_status(error: Exception) -> tuple[str, int]:
    if isinstance(error, InvalidRequest):
        return "INVALID_ARGUMENT", pb_utils.TritonError.INVALID_ARG
    if isinstance(error, AtCapacity):
        return "UNAVAILABLE", pb_utils.TritonError.UNAVAILABLE
    return "INTERNAL", pb_utils.TritonError.INTERNAL


def error_response(error: Exception):
    """Errors inside a gRPC stream reach the client as a message only (no status code, seen on
    Triton 2.51), so the message starts with the status name: "INVALID_ARGUMENT: duration: ..."."""
    status, code = error_status(error)
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{status}: {str(error) or type(error).__name__}", code))


def config_parameters(args) -> dict[str, str]:
    """The `parameters` of the model's config.pbtxt, as Triton hands them to initialize()."""
    config = json.loads(args["model_config"])
    return knobs({key: value["string_value"] for key, value in config.get("parameters", {}).items()})


def refused(error: InvalidRequest):
    """A (non-decoupled) model's response refusing its request's input: INVALID_ARG, "field: rule"."""
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error), pb_utils.TritonError.INVALID_ARG))


def read_scalars(request, names) -> dict:
    """name -> python value for every input present; each must hold exactly one element."""
    values = {}
    for name in names:
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        if tensor is None:
            continue
        array = tensor.as_numpy()
        if array.size != 1:
            raise InvalidRequest(name, f"must hold exactly one value, got shape {list(array.shape)}")
        values[name] = array.reshape(-1)[0].item() if array.dtype != object else array.reshape(-1)[0]
    return values


class TritonStream:
    """The scheduler's Stream over a decoupled response sender. The final flag is sent once."""

    def __init__(self, sender, sample_rate: int, request_id: str = ""):
        self._sender = sender
        self.request_id = request_id  # the client's gRPC request id, in the engine's log lines
        self._sample_rate = np.array([sample_rate], np.int32)
        self._closed = False
        self._lock = threading.Lock()

    def cancelled(self) -> bool:
        return self._closed or self._sender.is_cancelled()

    def _send(self, response=None, final: bool = False) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = final
            if response is None:
                self._sender.send(flags=FINAL)
            else:
                self._sender.send(response, flags=FINAL if final else 0)

    def send(self, chunk: Chunk) -> None:
        outputs = [
            pb_utils.Tensor(T.AUDIO, chunk.audio),
            pb_utils.Tensor(T.CHUNK_INDEX, np.array([chunk.index], np.int32)),
            pb_utils.Tensor(T.SAMPLE_RATE, self._sample_rate),
        ]
        if chunk.codes is not None:
            outputs.append(pb_utils.Tensor(T.CODES, chunk.codes))
        if chunk.usage is not None:
            outputs += [pb_utils.Tensor(T.INPUT_TOKENS, np.array([chunk.usage[0]], np.int32)),
                        pb_utils.Tensor(T.OUTPUT_TOKENS, np.array([chunk.usage[1]], np.int32))]
        self._send(pb_utils.InferenceResponse(output_tensors=outputs), final=chunk.final)

    def fail(self, error: Exception) -> None:
        self._send(error_response(error), final=True)

    def close(self) -> None:
        self._send(final=True)


class BlsLoop:
    """One thread running an asyncio loop that makes every BLS call of this process.

    Concurrent `exec()` calls from several threads crash the 2.51 python backend (SIGSEGV seen
    with 8 streams); `async_exec()` coroutines on one loop are stable and still reach the
    callee's dynamic batcher together.
    """

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="bls-loop", daemon=True).start()

    def run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)


ENSEMBLE_STEP = re.compile(r"^(in ensemble '[^']*', )+")  # what Triton puts before an ensemble step's error


def refusal(message: str, input_names: tuple[str, ...]) -> InvalidRequest | None:
    """A callee's refusal of an input it was sent ("text: rule", after Triton's "in ensemble 'x', " when an
    ensemble's step refused) as the caller's InvalidRequest, word for word; None for any other error.
    (A BLS response's error code reads INTERNAL on 2.51 whatever the callee said, so the message decides.)"""
    field, sep, rule = ENSEMBLE_STEP.sub("", message).partition(": ")
    return InvalidRequest(field, rule) if sep and field in input_names else None


class BlsModel:
    """Call another Triton model (dynamic batching happens there) as a plain function.

    `output_name` is one output (a call returns its array) or a tuple of them (a call returns a tuple).
    With `passes_refusals`, the callee validates what the caller's client sent (a tokenizer, or an ensemble
    starting with one): its refusal of an input ("text: ...") is that request's InvalidRequest, word for word."""

    def __init__(self, loop: BlsLoop, model_name: str, input_names: tuple[str, ...],
                 output_name: str | tuple[str, ...], passes_refusals: bool = False):
        self.loop = loop
        self.model_name, self.input_names, self.output_name = model_name, input_names, output_name
        self.output_names = (output_name,) if isinstance(output_name, str) else tuple(output_name)
        self.passes_refusals = passes_refusals

    async def infer(self, *arrays: np.ndarray):
        request = pb_utils.InferenceRequest(
            model_name=self.model_name,
            requested_output_names=list(self.output_names),
            inputs=[pb_utils.Tensor(name, array) for name, array in zip(self.input_names, arrays)],
        )
        response = await request.async_exec()
        if response.has_error():
            message = response.error().message()
            if self.passes_refusals and (refused_input := refusal(message, self.input_names)) is not None:
                raise refused_input
            raise RuntimeError(f"{self.model_name}: {message}")
        outputs = tuple(pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in self.output_names)
        return outputs[0] if isinstance(self.output_name, str) else outputs

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        return self.loop.run(self.infer(*arrays))

    def each(self, items: list[tuple[np.ndarray, ...]]) -> list[np.ndarray]:
        """One request per item, all in flight at once; item (input arrays [..], ...) -> output [0] of a batch of one."""

        async def gather():
            return await asyncio.gather(*(self.infer(*(array[None] for array in item)) for item in items))

        return [output[0] for output in self.loop.run(gather())]


class OnnxBatchModel:
    """A stateless model: run the ONNX graph in its version folder over Triton's dynamic batches.
    Subclasses name its inputs and its output (`output_name`) or outputs (`output_names`)."""

    input_names: tuple[str, ...] = ()
    output_name: str = ""
    output_names: tuple[str, ...] = ()

    def initialize(self, args):
        directory = Path(args["model_repository"]) / args["model_version"]
        self.session = open_session(directory / T.ONNX_FILE)

    def execute(self, requests):
        arrays = [[pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.input_names] for r in requests]
        responses = [None] * len(requests)
        by_shape: dict[tuple, list[int]] = {}
        for index, inputs in enumerate(arrays):
            by_shape.setdefault(tuple(a.shape[1:] for a in inputs), []).append(index)
        names = self.output_names or (self.output_name,)
        for indices in by_shape.values():  # the dynamic batcher groups equal shapes; be safe anyway
            feed = {name: np.concatenate([arrays[i][n] for i in indices]) for n, name in enumerate(self.input_names)}
            outputs = self.session.run(list(names), feed)
            offset = 0
            for i in indices:
                rows = arrays[i][0].shape[0]
                tensors = [pb_utils.Tensor(name, output[offset : offset + rows]) for name, output in zip(names, outputs)]
                responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
                offset += rows
        return responses


class EngineMetrics:
    """The decode loop's counters as Triton custom metrics (served on the metrics port)."""

    COUNTERS = {
        "steps": ("tritone_decode_steps_total", "Decode steps run"),
        "request_steps": ("tritone_decode_request_steps_total", "Sum over decode steps of the requests in the step"),
        "prefill_tokens": ("tritone_prefill_tokens_total", "Prompt tokens fed a chunk per step beside decoding rows"),
        "joined_running": ("tritone_requests_joined_running_total", "Requests admitted while others were mid-generation"),
        "completed": ("tritone_streams_completed_total", "Streams that generated all their audio"),
        "cancelled": ("tritone_streams_cancelled_total", "Streams cancelled by their client"),
        "failed": ("tritone_streams_failed_total", "Streams that ended with an error after admission"),
        "prefix_hits": ("tritone_prefix_cache_hits_total", "Requests that started past their prompt prefix, cached"),
        "prefix_misses": ("tritone_prefix_cache_misses_total", "Requests that prefilled a cacheable prompt prefix"),
        "prefix_tokens_saved": ("tritone_prefix_cache_tokens_saved_total", "Prompt tokens not prefilled thanks to hits"),
    }
    GAUGES = {
        "max_batch_requests": ("tritone_decode_batch_requests_max", "Most requests decoded in one step"),
        "active": ("tritone_decode_slots_active", "Decode slots in use"),
        "waiting": ("tritone_requests_waiting", "Requests waiting for a decode slot"),
        "prefix_cache_bytes": ("tritone_prefix_cache_bytes", "Prompt prefixes' keys/values held by the prefix cache"),
    }

    # The python backend of Triton 2.51 has counters and gauges only: the decode-step time histogram is its
    # exposition's three series as counters (_bucket{le}, _sum, _count), which histogram_quantile() reads alike.
    STEP_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
    STEP = "tritone_decode_step_seconds"

    def __init__(self, model: str):
        labels = {"model": model}
        self._model = model
        self._seen = EngineStats()
        self._metrics = {}
        self._families = []  # a Metric dies with its family: keep both
        for kind, table in ((pb_utils.MetricFamily.COUNTER, self.COUNTERS), (pb_utils.MetricFamily.GAUGE, self.GAUGES)):
            for field_name, (name, description) in table.items():
                family = pb_utils.MetricFamily(name=name, description=description, kind=kind)
                self._families.append(family)
                self._metrics[field_name] = family.Metric(labels=labels)
        counter = pb_utils.MetricFamily.COUNTER
        buckets = pb_utils.MetricFamily(name=f"{self.STEP}_bucket", kind=counter,
                                        description="Decode steps that took at most `le` seconds (histogram buckets)")
        step_sum = pb_utils.MetricFamily(name=f"{self.STEP}_sum", kind=counter,
                                         description="Seconds spent in decode steps (histogram sum)")
        step_count = pb_utils.MetricFamily(name=f"{self.STEP}_count", kind=counter,
                                           description="Decode steps timed (histogram count)")
        self._families += [buckets, step_sum, step_count]
        self._step_buckets = [(bound, buckets.Metric(labels={**labels, "le": f"{bound:g}"}))
                              for bound in self.STEP_BUCKETS_S] + [(math.inf, buckets.Metric(labels={**labels,
                                                                                                     "le": "+Inf"}))]
        self._step_sum, self._step_count = step_sum.Metric(labels=labels), step_count.Metric(labels=labels)

    def _observe_step(self, seconds: float) -> None:
        for bound, metric in self._step_buckets:
            if seconds <= bound:
                metric.increment(1)
        self._step_sum.increment(seconds)
        self._step_count.increment(1)

    def lm_info(self, lm) -> None:
        """tritone_lm_info{model, runtime, dtype} 1: what the LM step runs on (ensemble/engine/lm_choice.py)."""
        family = pb_utils.MetricFamily(name="tritone_lm_info", description="The LM step's runtime and dtype (value 1)",
                                       kind=pb_utils.MetricFamily.GAUGE)
        self._families.append(family)
        self._metrics["lm_info"] = family.Metric(labels={"model": self._model, "runtime": lm.runtime,
                                                         "dtype": lm.dtype})
        self._metrics["lm_info"].set(1)

    def update(self, stats: EngineStats) -> None:
        if stats.steps > self._seen.steps:  # called after every loop iteration: a new step ran
            self._observe_step(stats.last_step_s)
        for field_name in self.COUNTERS:
            delta = getattr(stats, field_name) - getattr(self._seen, field_name)
            if delta:
                self._metrics[field_name].increment(delta)
                setattr(self._seen, field_name, getattr(stats, field_name))
        for field_name in self.GAUGES:
            self._metrics[field_name].set(getattr(stats, field_name))


class StreamingModel:
    """A decoupled pipeline model: validate each request, queue it on the engine, stream its chunks.

    Subclasses name the model, the inputs they read and how to build their pipeline."""

    name = ""
    SCALARS: tuple[str, ...] = ()  # inputs holding one value
    ARRAYS: tuple[str, ...] = ()  # inputs passed on as arrays

    def read_inputs(self, request) -> dict:
        raw = read_scalars(request, self.SCALARS)
        for name in self.ARRAYS:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is not None:
                raw[name] = tensor.as_numpy()
        return raw

    def build(self, repository: Path, parameters: dict[str, str], bls: BlsLoop, on_step):
        raise NotImplementedError

    def describe(self) -> str:
        return ""

    def initialize(self, args):
        log_format.configure("tritone")  # this stub's lines on tritonserver's output, as TRITONE_LOG_FORMAT says
        parameters = config_parameters(args)
        repository = Path(args["model_repository"]).parent
        self.metrics = EngineMetrics(self.name)
        self.bls = BlsLoop()
        self.pipeline = self.build(repository, parameters, self.bls, self.metrics.update)
        lm = getattr(self.pipeline, "lm", None)  # the LM's resolved runtime and dtype, where the family says
        if lm is not None:
            self.metrics.lm_info(lm)
        self.pipeline.engine.start()
        log.warning("%s ready: %s%s", self.name, f"LM step on {lm}; " if lm is not None else "", self.describe())

    def submit(self, raw: dict, stream: TritonStream) -> None:
        self.pipeline.submit(self.pipeline.validate(raw), stream)

    def execute(self, requests):
        for request in requests:
            stream = TritonStream(request.get_response_sender(), self.pipeline.model.sample_rate, request.request_id())
            try:
                self.submit(self.read_inputs(request), stream)
            except (InvalidRequest, AtCapacity) as error:
                stream.fail(error)
            except Exception as error:
                log.exception("%s request failed before admission", self.name)
                stream.fail(error)
        return None

    def finalize(self):
        self.pipeline.engine.stop()
        self.bls.stop()
