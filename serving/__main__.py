"""Run tritonserver in the foreground: ``python -m tritone.serving --model-repository DIR``.

Prints the endpoints once the server is ready. With --gateway-port it also runs the HTTP gateway.
Either one that exits is started again (serving/supervisor.py); Ctrl-C (SIGINT) or SIGTERM stops
both, running streams getting --drain-timeout seconds.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

from tritone.serving.supervisor import GatewayProcess, supervise, triton_child
from tritone.serving.triton import TritonServer, TritonServerError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tritone.serving", description=__doc__.splitlines()[0])
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
                        help="also run the HTTP gateway (python -m tritone.gateway) on this port once Triton is ready; 0: no")
    parser.add_argument("--drain-timeout", type=int, default=15,
                        help="seconds a stop gives running streams before they are cut (idle: a stop takes ~3 s)")
    parser.add_argument("--grpc-max-connection-age", type=int, default=0,
                        help="seconds after which Triton closes a client's gRPC connection (the client reconnects and "
                             "resolves Triton's name again: new replicas get streams); 0: never")
    parser.add_argument("--grpc-max-connection-age-grace", type=int, default=0,
                        help="seconds the streams of a closing connection still get (make it longer than a stream)")
    return parser.parse_args(argv)


def connection_age_args(args: argparse.Namespace) -> list[str]:
    """tritonserver's flags for --grpc-max-connection-age(-grace), in its milliseconds."""
    flags = []
    if args.grpc_max_connection_age > 0:
        flags.append(f"--grpc-max-connection-age={args.grpc_max_connection_age * 1000}")
    if args.grpc_max_connection_age_grace > 0:
        flags.append(f"--grpc-max-connection-age-grace={args.grpc_max_connection_age_grace * 1000}")
    return flags


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

    def start_triton() -> None:
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
            exit_timeout_s=args.drain_timeout,
            extra_args=connection_age_args(args),
        )

    with server:
        start_triton()
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
        children = [triton_child(server, start_triton)]
        children[0].started_at = time.monotonic()
        if args.gateway_port:
            gateway = GatewayProcess(args.host, args.gateway_port, server, args.drain_timeout).child()
            gateway.start()
            children.append(gateway)
            print(f"       gateway http://{args.host}:{args.gateway_port} (docs at /docs)", flush=True)
        print("Ctrl-C to stop.", flush=True)
        supervise(children, stop, args.drain_timeout)
    print("stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
