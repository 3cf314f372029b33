"""The Triton replicas behind the gateway's target, and how many of them are ready (for /readyz).

The target is a gRPC name (gateway/triton.py balances each stream over what it resolves to):
- `ipv4:10.0.0.1:8001,10.0.0.2:8001` or `ipv6:[::1]:8001,[::2]:8001`: the listed addresses;
- `dns:///triton-headless:8001` (or `dns://authority/host:port`, `dns:host:port`): the host's addresses, looked
  up when asked, as a Kubernetes headless Service resolves to every ready pod;
- `host:port` without a scheme: gRPC resolves it by DNS too (every address of the name, each a replica: a
  headless Service's name works bare), so it is looked up here as well; an IP address is one replica;
- another scheme (`unix:/path`, ...): one replica, the target itself.
Each replica is asked `ServerReady` on a channel of its own (kept while the replica stays in the target), with a
short timeout, so a dead or unresponsive replica counts as not ready without holding the probe up.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from dataclasses import dataclass

from tritonclient.grpc import aio as grpcaio

log = logging.getLogger("tritone.gateway")

DEFAULT_PORT = 443  # gRPC's default when a target names no port
OTHER_SCHEMES = frozenset({"unix", "unix-abstract", "vsock", "xds", "google-c2p"})  # one target, not looked up


class TargetError(ValueError):
    """A Triton target that cannot be read."""


@dataclass(frozen=True)
class Target:
    """A parsed gRPC target: `addresses` listed, or `host`/`port` looked up in DNS when `dns` is set."""

    addresses: tuple[str, ...] = ()
    dns: bool = False
    host: str = ""
    port: int = DEFAULT_PORT


def _split_host_port(text: str, where: str) -> tuple[str, int]:
    """`host:port`, `host`, `[v6]:port` or `[v6]` -> (host, port); the port defaults to gRPC's 443."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not host or (rest and not rest.startswith(":")):
            raise TargetError(f"{where}: {text!r} is not [ipv6-address]:port")
        port = rest[1:]
    elif text.count(":") > 1:  # a bare IPv6 address, no port
        host, port = text, ""
    else:
        host, _, port = text.partition(":")
    if not host:
        raise TargetError(f"{where}: {text!r} names no host")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise TargetError(f"{where}: {text!r} has no valid port (1-65535)")
    return host, int(port) if port else DEFAULT_PORT


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_target(target: str) -> Target:
    """What a gRPC target names (see the module's docstring); TargetError naming the part that is wrong."""
    target = target.strip()
    if not target:
        raise TargetError("triton_grpc_url is empty")
    scheme, colon, rest = target.partition(":")
    if colon and scheme in ("ipv4", "ipv6"):
        pieces = [piece.strip() for piece in rest.split(",")]
        if not all(pieces):
            raise TargetError(f"triton_grpc_url: {target!r} has an empty address in its {scheme} list")
        return Target(addresses=tuple(_address(*_split_host_port(piece, "triton_grpc_url")) for piece in pieces))
    if colon and scheme == "dns":
        if rest.startswith("//"):  # dns://[authority]/host:port: the authority (a DNS server) is not ours to use
            authority, slash, rest = rest[2:].partition("/")
            if not slash:
                raise TargetError(f"triton_grpc_url: {target!r} is not dns:///host:port")
        host, port = _split_host_port(rest, "triton_grpc_url")
        return Target(dns=True, host=host, port=port)
    if colon and scheme in OTHER_SCHEMES:
        return Target(addresses=(target,))
    host, port = _split_host_port(target, "triton_grpc_url")  # no scheme: gRPC's default, dns
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return Target(dns=True, host=host, port=port)
    return Target(addresses=(_address(host, port),))


async def resolve(target: Target) -> list[str]:
    """The target's replica addresses now: a DNS target looked up (no address when the name does not resolve)."""
    if not target.dns:
        return list(target.addresses)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        log.warning("the Triton target's host %s does not resolve: %s", target.host, error)
        return []
    return list(dict.fromkeys(_address(info[4][0], info[4][1]) for info in infos))  # in order, once each


@dataclass(frozen=True)
class ReplicaCount:
    ready: int
    total: int

    def as_json(self) -> dict[str, int]:
        return {"ready": self.ready, "total": self.total}


class ReplicaHealth:
    """Counts the ready replicas of one target; `close` when done."""

    def __init__(self, target: str, timeout_s: float):
        self.target = parse_target(target)
        self.timeout_s = timeout_s
        self._clients: dict[str, grpcaio.InferenceServerClient] = {}

    async def _ready(self, address: str) -> bool:
        client = self._clients.get(address)
        if client is None:
            client = self._clients[address] = grpcaio.InferenceServerClient(address)
        try:
            async with asyncio.timeout(self.timeout_s):
                return bool(await client.is_server_ready(client_timeout=self.timeout_s))
        except Exception:  # noqa: BLE001 - unreachable, refused, timed out: not ready
            return False

    async def count(self) -> ReplicaCount:
        addresses = await resolve(self.target)
        for gone in set(self._clients) - set(addresses):  # a replica no longer in the target: its channel closed
            await self._clients.pop(gone).close()
        ready = await asyncio.gather(*(self._ready(address) for address in addresses))
        return ReplicaCount(sum(ready), len(addresses))

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()
