"""The Triton replicas a target names (gateway/triton_replicas.py): parsing every gRPC target form, a DNS name
looked up when counted, and the count of ready replicas over real gRPC servers (one ready, one not, one gone)."""

from __future__ import annotations

import asyncio
from concurrent import futures

import grpc
import pytest
from pydantic import ValidationError
from tritonclient.grpc import service_pb2, service_pb2_grpc

from tritone.gateway.settings import Settings
from tritone.gateway.triton_replicas import ReplicaCount, ReplicaHealth, Target, TargetError, parse_target, resolve
from tritone.serving.triton import free_port


@pytest.mark.parametrize(("target", "parsed"), [
    ("127.0.0.1:8001", Target(addresses=("127.0.0.1:8001",))),
    ("[::1]:8001", Target(addresses=("[::1]:8001",))),
    ("triton-headless:8001", Target(dns=True, host="triton-headless", port=8001)),  # gRPC's default scheme: dns
    ("triton", Target(dns=True, host="triton", port=443)),
    ("ipv4:127.0.0.1:8001,127.0.0.1:8002", Target(addresses=("127.0.0.1:8001", "127.0.0.1:8002"))),
    ("ipv4:10.0.0.1:8001, 10.0.0.2", Target(addresses=("10.0.0.1:8001", "10.0.0.2:443"))),
    ("ipv6:[::1]:8001,[fe80::2]:9000", Target(addresses=("[::1]:8001", "[fe80::2]:9000"))),
    ("ipv6:::1", Target(addresses=("[::1]:443",))),
    ("dns:///triton-headless:8001", Target(dns=True, host="triton-headless", port=8001)),
    ("dns://10.0.0.10:53/triton-headless.ns.svc:8001", Target(dns=True, host="triton-headless.ns.svc", port=8001)),
    ("dns:triton:8001", Target(dns=True, host="triton", port=8001)),
    ("dns:///[::1]:8001", Target(dns=True, host="::1", port=8001)),
    ("unix:/run/triton.sock", Target(addresses=("unix:/run/triton.sock",))),
])
def test_every_target_form_names_its_replicas(target, parsed):
    assert parse_target(target) == parsed


@pytest.mark.parametrize(("target", "message"), [
    ("", "triton_grpc_url is empty"),
    ("ipv4:127.0.0.1:8001,", "triton_grpc_url: 'ipv4:127.0.0.1:8001,' has an empty address in its ipv4 list"),
    ("ipv4:127.0.0.1:80x1", "triton_grpc_url: '127.0.0.1:80x1' has no valid port (1-65535)"),
    ("ipv4::8001", "triton_grpc_url: ':8001' names no host"),
    ("ipv6:[::1:8001", "triton_grpc_url: '[::1:8001' is not [ipv6-address]:port"),
    ("dns://10.0.0.10", "triton_grpc_url: 'dns://10.0.0.10' is not dns:///host:port"),
    ("dns:///triton:0", "triton_grpc_url: 'triton:0' has no valid port (1-65535)"),
    ("triton:http", "triton_grpc_url: 'triton:http' has no valid port (1-65535)"),
])
def test_a_target_that_cannot_be_read_names_the_setting(target, message):
    with pytest.raises(TargetError) as raised:
        parse_target(target)
    assert str(raised.value) == message


def test_the_setting_refuses_an_unreadable_target():
    with pytest.raises(ValidationError, match="triton_grpc_url: 'ipv4:127.0.0.1:8001,' has an empty address"):
        Settings(triton_grpc_url="ipv4:127.0.0.1:8001,")
    assert Settings(triton_grpc_url="dns:///triton-headless:8001").triton_grpc_url == "dns:///triton-headless:8001"


def test_a_dns_target_is_looked_up_when_resolved():
    assert asyncio.run(resolve(parse_target("dns:///127.0.0.1:8001"))) == ["127.0.0.1:8001"]
    assert "127.0.0.1:9000" in asyncio.run(resolve(parse_target("dns:///localhost:9000")))
    assert asyncio.run(resolve(parse_target("dns:///no-such-host.invalid:8001"))) == []
    assert asyncio.run(resolve(parse_target("ipv4:10.0.0.1:1,10.0.0.2:2"))) == ["10.0.0.1:1", "10.0.0.2:2"]


class Readiness(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, ready: bool):
        self.ready = ready
        self.asked = 0

    def ServerReady(self, request, context):
        self.asked += 1
        return service_pb2.ServerReadyResponse(ready=self.ready)


def test_the_ready_replicas_are_counted_each_on_its_own_channel():
    servers, fakes, addresses = [], [], []
    for ready in (True, False):
        fake = Readiness(ready)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(fake, server)
        addresses.append(f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}")
        server.start()
        servers.append(server)
        fakes.append(fake)
    addresses.append(f"127.0.0.1:{free_port()}")  # nothing listens there: a replica that is down

    async def count(target: str) -> list[ReplicaCount]:
        health = ReplicaHealth(target, timeout_s=1.0)
        try:
            return [await health.count(), await health.count()]
        finally:
            await health.close()

    try:
        assert asyncio.run(count("ipv4:" + ",".join(addresses))) == [ReplicaCount(1, 3)] * 2
        assert [fake.asked for fake in fakes] == [2, 2]  # every replica asked at every count
        assert asyncio.run(count(addresses[0])) == [ReplicaCount(1, 1)] * 2
        assert asyncio.run(count(addresses[1])) == [ReplicaCount(0, 1)] * 2
        servers[0].stop(None)  # the ready one goes away
        assert asyncio.run(count("ipv4:" + ",".join(addresses))) == [ReplicaCount(0, 3)] * 2
    finally:
        for server in servers:
            server.stop(None)
    assert ReplicaCount(1, 2).as_json() == {"ready": 1, "total": 2}
