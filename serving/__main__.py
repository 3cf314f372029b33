"""Run tritonserver in the foreground: ``python -m serving --model-repository DIR``.

Prints the endpoints once the server is ready; Ctrl-C (SIGINT) or SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time

from serving.triton import TritonServer, TritonServerError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", required=True, help="Triton model repository directory")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for all)")
    parser.add_argument("--model-config-name", default=None,
                        help="use <model>/configs/<NAME>.pbtxt where present (e.g. 'cpu')")
    parser.add_argument("--model-control-mode", choices=("none", "explicit"), default=None)
    parser.add_argument("--load-model", action="append", default=[], dest="load_models",
                        help="model to load at startup (explicit mode); repeatable")
    parser.add_argument("--log-verbose", type=int, default=0)
    parser.add_argument("--log-file", default=None, help="server log file (default: a temporary file)")
    parser.add_argument("--ready-timeout", type=float, default=300.0, help="seconds to wait for readiness")
    parser.add_argument("--gateway-port", type=int, default=0,
                        help="also run the HTTP gateway (python -m gateway) on this port once Triton is ready; 0: no")
    return parser.parse_args(argv)


def start_gateway(args: argparse.Namespace, server: TritonServer) -> subprocess.Popen:
    """The FastAPI gateway in front of this server, as a child process (stopped with it)."""
    env = {**os.environ,
           "TRITONE_HOST": args.host,
           "TRITONE_PORT": str(args.gateway_port),
           "TRITONE_TRITON_GRPC_URL": server.grpc_url,
           "TRITONE_TRITON_HTTP_URL": f"http://{server.http_url}",
           "TRITONE_TRITON_METRICS_URL": server.metrics_url}
    process = subprocess.Popen([sys.executable, "-m", "gateway"], env=env, start_new_session=True)
    print(f"       gateway http://{args.host}:{args.gateway_port} (docs at /docs)", flush=True)
    return process


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    try:
        server = TritonServer(host=args.host)
    except TritonServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with server:
        server.start(
            args.model_repository,
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            metrics_port=args.metrics_port,
            model_config_name=args.model_config_name,
            model_control_mode=args.model_control_mode,
            load_models=args.load_models,
            log_verbose=args.log_verbose,
            log_file=args.log_file,
        )
        print(f"tritonserver (nvidia-pytriton {server.installation.version}) starting "
              f"(pid {server.pid}), log: {server.log_path}", flush=True)
        deadline = time.monotonic() + args.ready_timeout
        while not server.is_ready():  # not wait_ready(): Ctrl-C must work while models load
            if stop.wait(0.25):
                print("interrupted while starting; stopping tritonserver...", flush=True)
                return 130
            if not server.is_running():
                print(f"error: tritonserver exited before becoming ready. Log tail:\n{server.log_tail()}",
                      file=sys.stderr)
                return 1
            if time.monotonic() > deadline:
                print(f"error: not ready after {args.ready_timeout:.0f}s. Log tail:\n{server.log_tail()}",
                      file=sys.stderr)
                return 1
        print(f"ready  HTTP    http://{server.http_url}\n"
              f"       gRPC    {server.grpc_url}\n"
              f"       metrics {server.metrics_url}", flush=True)
        gateway = start_gateway(args, server) if args.gateway_port else None
        print("Ctrl-C to stop.", flush=True)
        try:
            while not stop.wait(0.5):
                if not server.is_running():
                    print(f"error: tritonserver exited. Log tail:\n{server.log_tail()}", file=sys.stderr)
                    return 1
                if gateway is not None and gateway.poll() is not None:
                    print(f"error: the gateway exited with code {gateway.returncode}", file=sys.stderr)
                    return 1
        finally:
            if gateway is not None and gateway.poll() is None:
                print("stopping the gateway...", flush=True)
                gateway.terminate()
                gateway.wait(timeout=30)
        print("stopping tritonserver...", flush=True)
    print("stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
