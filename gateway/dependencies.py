"""Objects the lifespan creates, injected into routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tritone.gateway.catalog import ModelCatalog
from tritone.gateway.metrics import GatewayMetrics
from tritone.gateway.settings import Settings
from tritone.gateway.triton import Triton


def _state(name: str):
    def get(request: Request):
        return getattr(request.app.state, name)

    return get


SettingsDep = Annotated[Settings, Depends(_state("settings"))]
TritonDep = Annotated[Triton, Depends(_state("triton"))]
MetricsDep = Annotated[GatewayMetrics, Depends(_state("metrics"))]
CatalogDep = Annotated[ModelCatalog, Depends(_state("catalog"))]
