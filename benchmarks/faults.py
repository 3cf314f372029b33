"""The bounded fault run: what clients see when the stack is hurt, and what the stack keeps.

    python -m tritone.benchmarks faults [--soak-minutes 10] [--cycles 100] [--out benchmarks/results/faults]

Runs `python -m tritone.serving` with the gateway (as `make serve MODEL=tiny-random` does) on free ports,
and through the gateway's HTTP API:

1. faults under load: 4 streams (2 music of 30 s, 2 long speech inputs, WAV) while tritonserver is
   SIGTERMed, SIGKILLed, the musicgen python stub is SIGKILLed, and musicgen is unloaded and loaded;
   every stream is classified: completed (the whole file), visible error (an HTTP error status, a
   chunked body cut without its terminating chunk, an SSE error event), or clean but short (a
   complete-looking response holding less than the whole file: must never happen);
2. disconnects: `--cycles` hang-ups mid-stream in every response format and as SSE; afterwards the
   engines' decode slots and the gateway's active streams must be back to 0;
3. a soak: 4 closed-loop workers of 5 s music for `--soak-minutes`, RSS of tritonserver and the
   gateway sampled every 30 s;
4. stops: 5 times, the stack started, streams run (more than the decode slots, so some wait), then
   SIGTERM; seconds until every process is gone, and /dev/shm regions left.

Writes results.json and results.md under OUT.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tritone.client.metrics import read_engine_metrics
from tritone.serving.processes import alive, children, command_line
from tritone.serving.triton import free_port, shared_memory_regions

ROOT = Path(__file__).resolve().parents[1]
MUSIC = {"prompt": "endless drone with slow pads", "duration": 30, "seed": 1}
MUSIC_BYTES = 44 + 30 * 32000 * 2  # a 30 s 16-bit WAV at 32 kHz
SPEECH_TEXT = " ".join(f"Sentence number {i} is spoken here, slowly and clearly." for i in range(12))
FORMATS = ("wav", "pcm", "flac", "mp3", "opus")
SHM = Path("/dev/shm")


# -- the stack -----------------------------------------------------------------------------------

def prepare_repository(work: Path) -> Path:
    """Every registered family's tiny-random export (each skipped when already there)."""
    from tritone.ensemble.families import FAMILIES
    from tritone.serving.container import sync_skeleton

    repository = work / "model_repository"
    sync_skeleton(repository)
    for family in FAMILIES.values():
        family.export("tiny-random", repository)
    return repository


def rss_kib(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class Stack:
    """`python -m tritone.serving --gateway-port` on free ports, output to a log file."""

    def __init__(self, repository: Path, log: Path):
        self.ports = {name: free_port() for name in ("http", "grpc", "metrics", "gateway")}
        env = {**os.environ, "TRITONE_DATA_DIR": str(log.parent / "gateway"), "TRITONE_MAX_STREAMS_PER_KEY": "64",
               "TRITONE_MAX_ANONYMOUS_STREAMS": "64", "TRITONE_JOB_WORKERS": "0"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tritone.serving", "--model-repository", str(repository), "--model-config-name", "cpu",
             "--model-control-mode", "explicit", "--load-model", "*", "--drain-timeout", "10",
             "--http-port", str(self.ports["http"]), "--grpc-port", str(self.ports["grpc"]),
             "--metrics-port", str(self.ports["metrics"]), "--gateway-port", str(self.ports["gateway"])],
            stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True, env=env)
        self.gateway = f"http://127.0.0.1:{self.ports['gateway']}"
        self.triton = f"http://127.0.0.1:{self.ports['http']}"
        self.metrics = f"http://127.0.0.1:{self.ports['metrics']}/metrics"

    def tritonserver(self) -> int | None:
        return next((pid for pid in children(self.process.pid) if "bin/tritonserver" in command_line(pid)), None)

    def gateway_pid(self) -> int | None:
        return next((pid for pid in children(self.process.pid) if "-m tritone.gateway" in command_line(pid)), None)

    def stub(self, model: str) -> int | None:
        server = self.tritonserver()
        found = [pid for pid in children(server) if f"/{model}/1/model.py" in command_line(pid)] if server else []
        return found[0] if found else None

    def wait_ready(self, timeout: float = 180.0) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                if httpx.get(f"{self.gateway}/readyz", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError("python -m tritone.serving exited")
            time.sleep(0.25)
        raise RuntimeError(f"not ready after {timeout:.0f} s")

    def stop(self) -> float:
        """SIGTERM, then seconds until `python -m tritone.serving` and every process under it are gone."""
        pids = [self.process.pid]
        for pid in pids:  # grows as it goes: children, then theirs
            pids += children(pid)
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        while any(alive(pid) for pid in pids):
            time.sleep(0.05)
        return time.monotonic() - started

    def engine_slots(self) -> float:
        return read_engine_metrics(self.metrics).get("tritone_decode_slots_active", 0.0)

    def gateway_active(self) -> float:
        for line in httpx.get(f"{self.gateway}/metrics", timeout=5).text.splitlines():
            if line.startswith("tritone_gateway_active_streams "):
                return float(line.split()[1])
        return 0.0


# -- what one client sees ------------------------------------------------------------------------

@dataclass
class Outcome:
    kind: str  # completed | visible_error | clean_short
    detail: str
    bytes: int


async def stream_once(client: httpx.AsyncClient, url: str, path: str, body: dict, full_bytes: int | None) -> Outcome:
    """One HTTP stream read to its end and classified."""
    received = 0
    try:
        async with client.stream("POST", url + path, json=body, timeout=120) as response:
            if response.status_code != 200:
                body = await response.aread()
                try:
                    code = json.loads(body)["error"]["code"]
                except (ValueError, KeyError, TypeError):
                    code = body[:60].decode(errors="replace")
                return Outcome("visible_error", f"HTTP {response.status_code} {code}", 0)
            text = b""
            async for piece in response.aiter_bytes():
                received += len(piece)
                if body.get("stream_format") == "sse":
                    text += piece
    except (httpx.RemoteProtocolError, httpx.ReadError) as error:  # the body was cut: no terminating chunk
        return Outcome("visible_error", type(error).__name__, received)
    except httpx.HTTPError as error:
        return Outcome("visible_error", type(error).__name__, received)
    if body.get("stream_format") == "sse":
        if b'"type": "error"' in text or b'"type":"error"' in text:
            return Outcome("visible_error", "SSE error event", received)
        return Outcome("completed" if b".audio.done" in text else "clean_short", "SSE", received)
    if full_bytes is not None and received < full_bytes:
        return Outcome("clean_short", f"{received} of {full_bytes} bytes", received)
    return Outcome("completed", "", received)


async def reference_speech_bytes(stack: Stack) -> int:
    async with httpx.AsyncClient() as client:
        outcome = await stream_once(client, stack.gateway, "/v1/audio/speech", speech_body(), None)
    assert outcome.kind == "completed", outcome
    return outcome.bytes


def speech_body(**extra) -> dict:
    return {"input": SPEECH_TEXT, "response_format": "wav", "seed": 7, **extra}


# -- 1. faults under load ------------------------------------------------------------------------

def inject(stack: Stack, fault: str) -> None:
    if fault == "sigterm_tritonserver":
        os.kill(stack.tritonserver(), signal.SIGTERM)
    elif fault == "sigkill_tritonserver":
        os.killpg(stack.tritonserver(), signal.SIGKILL)
    elif fault == "sigkill_musicgen_stub":
        os.kill(stack.stub("musicgen"), signal.SIGKILL)
    elif fault == "unload_and_load_musicgen":
        httpx.post(f"{stack.triton}/v2/repository/models/musicgen/unload", timeout=5)
        time.sleep(1.0)
        httpx.post(f"{stack.triton}/v2/repository/models/musicgen/load", timeout=120)
    else:
        raise ValueError(fault)


async def streams_under_fault(stack: Stack, fault: str, speech_bytes: int) -> list[Outcome]:
    async with httpx.AsyncClient() as client:
        tasks = [asyncio.create_task(stream_once(client, stack.gateway, "/v1/audio/music", MUSIC, MUSIC_BYTES))
                 for _ in range(2)]
        tasks += [asyncio.create_task(stream_once(client, stack.gateway, "/v1/audio/speech", speech_body(),
                                                  speech_bytes)) for _ in range(2)]
        await asyncio.sleep(0.4)
        await asyncio.to_thread(inject, stack, fault)
        return list(await asyncio.gather(*tasks))


def fault_runs(stack: Stack, repeats: int) -> dict:
    speech_bytes = asyncio.run(reference_speech_bytes(stack))
    results = {}
    for fault in ("sigterm_tritonserver", "sigkill_tritonserver", "sigkill_musicgen_stub", "unload_and_load_musicgen"):
        outcomes = []
        recovery = []
        for _ in range(repeats):
            outcomes += asyncio.run(streams_under_fault(stack, fault, speech_bytes))
            recovery.append(round(stack.wait_ready(), 2))
            time.sleep(1.0)
            recovery[-1] = round(recovery[-1] + wait_until_serving(stack), 2)
        results[fault] = {
            "streams": len(outcomes),
            "completed": sum(o.kind == "completed" for o in outcomes),
            "visible_error": sum(o.kind == "visible_error" for o in outcomes),
            "clean_short": sum(o.kind == "clean_short" for o in outcomes),
            "errors_seen": sorted({o.detail for o in outcomes if o.kind != "completed"}),
            "ready_again_s": recovery,
        }
        print(f"  {fault}: {results[fault]}", flush=True)
    return results


def wait_until_serving(stack: Stack, timeout: float = 120.0) -> float:
    """Seconds until a short music request succeeds again (a reloaded model may lag /readyz)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            response = httpx.post(f"{stack.gateway}/v1/audio/music", json={"prompt": "x", "duration": 1}, timeout=30)
            if response.status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the stack did not serve again")


# -- 2. disconnects --------------------------------------------------------------------------------

async def hang_up(client: httpx.AsyncClient, stack: Stack, body: dict) -> None:
    async with client.stream("POST", f"{stack.gateway}/v1/audio/music", json=body, timeout=60) as response:
        if body.get("response_format") == "flac":
            return  # FLAC comes whole at the end: hang up once the headers are in
        async for _ in response.aiter_bytes():
            break  # first bytes in: hang up


def disconnect_runs(stack: Stack, cycles: int) -> dict:
    results = {}
    variants = [(fmt, {"response_format": fmt}) for fmt in FORMATS] + [("sse", {"stream_format": "sse"})]
    for name, extra in variants:
        async def run() -> None:
            for _ in range(cycles):
                async with httpx.AsyncClient() as client:  # a new connection each time, closed mid-body
                    await hang_up(client, stack, {**MUSIC, **extra})
        before = read_engine_metrics(stack.metrics)
        started = time.monotonic()
        asyncio.run(run())
        settled = _settle(stack)
        after = read_engine_metrics(stack.metrics)
        results[name] = {
            "cycles": cycles,
            "seconds": round(time.monotonic() - started, 1),
            "engine_cancelled": int(after.get("tritone_streams_cancelled_total", 0)
                                    - before.get("tritone_streams_cancelled_total", 0)),
            "engine_completed": int(after.get("tritone_streams_completed_total", 0)
                                    - before.get("tritone_streams_completed_total", 0)),
            "slots_after": stack.engine_slots(),
            "gateway_active_after": stack.gateway_active(),
            "settled_in_s": settled,
        }
        print(f"  disconnects {name}: {results[name]}", flush=True)
    return results


def _settle(stack: Stack, timeout: float = 10.0) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if stack.engine_slots() == 0 and stack.gateway_active() == 0:
            return round(time.monotonic() - started, 2)
        time.sleep(0.05)
    return None


# -- 3. soak -----------------------------------------------------------------------------------------

def soak(stack: Stack, minutes: float) -> dict:
    samples: list[dict] = []
    counts = {"ok": 0, "error": 0}
    deadline = time.monotonic() + minutes * 60

    async def worker(client: httpx.AsyncClient, index: int) -> None:
        seed = index
        while time.monotonic() < deadline:
            seed += 4
            outcome = await stream_once(client, stack.gateway, "/v1/audio/music",
                                        {"prompt": f"soak {seed}", "duration": 5, "seed": seed}, 44 + 5 * 32000 * 2)
            counts["ok" if outcome.kind == "completed" else "error"] += 1

    async def sampler() -> None:
        started = time.monotonic()
        while time.monotonic() < deadline:
            samples.append({"t_s": round(time.monotonic() - started), "tritonserver_kib": rss_kib(stack.tritonserver()),
                            "gateway_kib": rss_kib(stack.gateway_pid())})
            await asyncio.sleep(30)

    async def run() -> None:
        async with httpx.AsyncClient() as client:
            await asyncio.gather(sampler(), *(worker(client, i) for i in range(4)))

    asyncio.run(run())
    time.sleep(2)
    samples.append({"t_s": round(minutes * 60), "tritonserver_kib": rss_kib(stack.tritonserver()),
                    "gateway_kib": rss_kib(stack.gateway_pid())})
    warm = samples[1] if len(samples) > 2 else samples[0]  # after the first 30 s: allocators warmed up
    result = {"minutes": minutes, "requests_ok": counts["ok"], "requests_failed": counts["error"], "rss": samples,
              "tritonserver_growth_kib": samples[-1]["tritonserver_kib"] - warm["tritonserver_kib"],
              "gateway_growth_kib": samples[-1]["gateway_kib"] - warm["gateway_kib"]}
    print(f"  soak: {counts}, tritonserver {warm['tritonserver_kib']} -> {samples[-1]['tritonserver_kib']} KiB, "
          f"gateway {warm['gateway_kib']} -> {samples[-1]['gateway_kib']} KiB", flush=True)
    return result


# -- 4. stops ------------------------------------------------------------------------------------------

def stop_runs(repository: Path, work: Path, count: int) -> list[dict]:
    runs = []
    for index in range(count):
        stack = Stack(repository, work / "stops.log")
        stack.wait_ready()
        server = stack.tritonserver()
        ours = shared_memory_regions(server)
        if index % 2:  # every other stop after more streams than slots (some waited): the case that hung
            async def burst() -> None:
                async with httpx.AsyncClient() as client:
                    await asyncio.gather(*(stream_once(client, stack.gateway, "/v1/audio/music",
                                                       {"prompt": f"q{i}", "duration": 10}, None) for i in range(12)))
            asyncio.run(burst())
        took = stack.stop()
        runs.append({"after_queued_streams": bool(index % 2), "seconds": round(took, 2),
                     "shm_regions": len(ours), "shm_regions_left": sum((SHM / name).exists() for name in ours)})
        print(f"  stop {index + 1}: {runs[-1]}", flush=True)
    return runs


# -- report ---------------------------------------------------------------------------------------------

def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def markdown(results: dict) -> str:
    lines = [f"# Fault run ({results['date']})", "", f"Machine: {results['machine']}; commit {results['commit']}.", "",
             "## Faults under load (2 music 30 s + 2 long speech streams each, WAV over HTTP)", "",
             "| fault | streams | completed | visible error | clean but short | ready again (s) |",
             "|---|---|---|---|---|---|"]
    for fault, row in results["faults"].items():
        lines.append(f"| {fault} | {row['streams']} | {row['completed']} | {row['visible_error']} | "
                     f"{row['clean_short']} | {', '.join(map(str, row['ready_again_s']))} |")
    lines += ["", "## Disconnects (hang up after the first bytes of a 30 s music stream)", "",
              "| format | cycles | engine cancelled | engine completed | slots after | gateway streams after | settled (s) |",
              "|---|---|---|---|---|---|---|"]
    for name, row in results["disconnects"].items():
        lines.append(f"| {name} | {row['cycles']} | {row['engine_cancelled']} | {row['engine_completed']} | "
                     f"{row['slots_after']:g} | {row['gateway_active_after']:g} | {row['settled_in_s']} |")
    if results.get("soak"):
        soak_result = results["soak"]
        first, last = soak_result["rss"][1 if len(soak_result["rss"]) > 2 else 0], soak_result["rss"][-1]
        lines += ["", f"## Soak ({soak_result['minutes']:g} min, 4 streams of 5 s music)", "",
                  f"{soak_result['requests_ok']} requests completed, {soak_result['requests_failed']} failed. "
                  f"RSS after the first 30 s -> at the end: tritonserver {first['tritonserver_kib']} -> "
                  f"{last['tritonserver_kib']} KiB ({soak_result['tritonserver_growth_kib']:+d}), gateway "
                  f"{first['gateway_kib']} -> {last['gateway_kib']} KiB ({soak_result['gateway_growth_kib']:+d})."]
    lines += ["", "## Stops (SIGTERM to `python -m tritone.serving`)", "", "| stop | after queued streams | seconds | its /dev/shm regions | left after the stop |",
              "|---|---|---|---|---|"]
    for index, row in enumerate(results["stops"], 1):
        lines.append(f"| {index} | {row['after_queued_streams']} | {row['seconds']} | {row['shm_regions']} | {row['shm_regions_left']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tritone.benchmarks faults", description=__doc__.splitlines()[0])
    parser.add_argument("--soak-minutes", type=float, default=10.0)
    parser.add_argument("--cycles", type=int, default=100, help="disconnects per format")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each fault")
    parser.add_argument("--stops", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "faults")
    parser.add_argument("--work-dir", type=Path, default=ROOT / ".tritone" / "faults")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped from outside: the stack is still stopped

    args.work_dir.mkdir(parents=True, exist_ok=True)
    repository = prepare_repository(args.work_dir)
    commit = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    results = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(), "commit": commit}
    stack = Stack(repository, args.work_dir / "serving.log")
    try:
        print(f"ready in {stack.wait_ready():.1f} s", flush=True)
        print("faults under load ...", flush=True)
        results["faults"] = fault_runs(stack, args.repeats)
        print("disconnects ...", flush=True)
        results["disconnects"] = disconnect_runs(stack, args.cycles)
        if args.soak_minutes > 0:
            print(f"soak {args.soak_minutes:g} min ...", flush=True)
            results["soak"] = soak(stack, args.soak_minutes)
    finally:
        stack.stop()
    print("stops ...", flush=True)
    results["stops"] = stop_runs(repository, args.work_dir, args.stops)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "results.md").write_text(markdown(results))
    print(f"wrote {args.out / 'results.md'}", flush=True)
    short = sum(row["clean_short"] for row in results["faults"].values())
    return 1 if short else 0


if __name__ == "__main__":
    sys.exit(main())
