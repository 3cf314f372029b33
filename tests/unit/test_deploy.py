"""deploy/: every overlay renders with `kubectl kustomize`, every object validates against Kubernetes 1.37's
schema (strict), and the names they share with Dockerfile.server and docker-compose.yml (images, ports,
health paths, environment variables, the drain) come from deploy/facts.json and agree everywhere."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tritone.serving.container import DRAIN_S

ROOT = Path(__file__).resolve().parents[2]
FACTS = json.loads((ROOT / "deploy" / "facts.json").read_text())
OVERLAYS = ("cpu", "gpu")
KUBERNETES = "1.37.0"


def render(overlay: str) -> list[dict]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "the deploy tests need kubectl (apt-get install kubectl; `make test` installs it)"
    out = subprocess.run([kubectl, "kustomize", str(ROOT / "deploy" / "overlays" / overlay)], check=True,
                         capture_output=True, text=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(objects: list[dict], kind: str, name: str) -> dict:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def container(deployment: dict, name: str, init: bool = False) -> dict:
    spec = deployment["spec"]["template"]["spec"]
    (found,) = [c for c in spec["initContainers" if init else "containers"] if c["name"] == name]
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders_and_every_object_validates_strictly(overlay):
    objects = render(overlay)
    kinds = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects)
    assert kinds == ["ConfigMap/prometheus-adapter-tritone-rules", "Deployment/gateway", "Deployment/triton",
                     "HorizontalPodAutoscaler/triton",
                     "PodDisruptionBudget/gateway", "PodDisruptionBudget/triton", "Service/gateway",
                     "Service/postgres", "Service/triton-headless", "Service/triton-metrics", "StatefulSet/postgres"]
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)  # raises naming the bad field


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_manifests_use_the_shared_names(overlay):
    objects = render(overlay)
    ports, health = FACTS["ports"], FACTS["health"]
    triton = find(objects, "Deployment", "triton")
    server = container(triton, "triton")
    assert server["image"].split(":")[0] == FACTS["images"][f"triton-{overlay}"]
    assert {p["name"]: p["containerPort"] for p in server["ports"]} == {
        "http": ports["triton-http"], "grpc": ports["triton-grpc"], "metrics": ports["triton-metrics"]}
    assert server["readinessProbe"]["httpGet"]["path"] == health["triton-ready"]
    assert server["livenessProbe"]["httpGet"]["path"] == health["triton-live"]
    assert {e["name"] for e in server["env"]} >= set(FACTS["triton-env"])
    prepare = container(triton, "prepare-models", init=True)
    assert prepare["image"] == server["image"] and prepare["command"][-3:] == ["--target", overlay, "--prepare-only"]
    assert triton["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > FACTS["drain-s"]
    assert triton["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(ports["triton-metrics"])
    if overlay == "gpu":
        assert server["resources"]["limits"]["nvidia.com/gpu"] == 1

    gateway = find(objects, "Deployment", "gateway")
    front = container(gateway, "gateway")
    assert front["image"].split(":")[0] == FACTS["images"]["gateway"]
    assert front["ports"][0]["containerPort"] == ports["gateway"]
    assert front["readinessProbe"]["httpGet"]["path"] == health["gateway-ready"]
    assert front["livenessProbe"]["httpGet"]["path"] == health["gateway-live"]
    env = {e["name"]: e.get("value") for e in front["env"]}
    assert set(env) >= set(FACTS["gateway-env"])
    assert env["TRITONE_TRITON_GRPC_URL"] == f"triton-headless:{ports['triton-grpc']}"
    # stateless replicas on the shared database: no volume, its URL from a Secret that must exist
    assert gateway["spec"]["replicas"] == 2 and "volumes" not in gateway["spec"]["template"]["spec"]
    database = next(e for e in front["env"] if e["name"] == "TRITONE_DATABASE_URL")
    assert database["valueFrom"]["secretKeyRef"] == {"name": "tritone-database", "key": "url"}
    headless = find(objects, "Service", "triton-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert {p["name"]: p["port"] for p in headless["spec"]["ports"]}["grpc"] == ports["triton-grpc"]

    hpa = find(objects, "HorizontalPodAutoscaler", "triton")
    watched = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"]]
    assert watched == ["tritone_requests_waiting", "tritone_decode_slots_active"]


def test_dockerfile_and_compose_use_the_shared_names():
    dockerfile = (ROOT / "Dockerfile.server").read_text()
    ports, health = FACTS["ports"], FACTS["health"]
    exposed = re.findall(r"^EXPOSE (.+)$", dockerfile, re.M)
    assert exposed == [f"{ports['triton-http']} {ports['triton-grpc']} {ports['triton-metrics']}"] * 2 + [
        str(ports["gateway"])]
    checks = re.findall(r"http://localhost:(\d+)(/[\w/.]+)", dockerfile)
    assert checks == [(str(ports["triton-http"]), health["triton-ready"])] * 2 + [
        (str(ports["gateway"]), health["gateway-live"])]
    assert FACTS["drain-s"] == DRAIN_S

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    gateway, triton = compose["x-gateway"], compose["x-triton"]
    assert set(gateway["environment"]) == set(FACTS["gateway-env"])
    assert gateway["ports"] == [f"{ports['gateway']}:{ports['gateway']}"]
    assert gateway["environment"]["TRITONE_TRITON_GRPC_URL"] == f"triton:{ports['triton-grpc']}"
    assert sorted(int(p) for p in triton["expose"]) == [ports["triton-http"], ports["triton-grpc"],
                                                         ports["triton-metrics"]]
    for name in ("triton-gpu", "triton-cpu"):
        service = compose["services"][name]
        assert set(service["environment"]) >= set(FACTS["triton-env"])
        assert service["healthcheck"]["test"][-1] == f"http://localhost:{ports['triton-http']}{health['triton-ready']}"
