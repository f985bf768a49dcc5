"""Service registry: instances register with a signed, heartbeat-refreshed record;
discovery serves a local, self-refreshing view of the live, ready ones.

    registrar = Registrar(redis, InstanceInfo(service="trading", url=url, version=v), settings)
    await registrar.start()
    discovery = Discovery(redis, settings, services=["trading"])
    await discovery.start()
    discovery.instances("trading")
"""

from __future__ import annotations

from backbone.registry.discovery import Discovery, Listener, View
from backbone.registry.metrics import RegistryMetrics, registry_metrics
from backbone.registry.models import STATUSES, InstanceInfo, Status
from backbone.registry.registrar import Registrar

__all__ = [
    "STATUSES",
    "Discovery",
    "InstanceInfo",
    "Listener",
    "Registrar",
    "RegistryMetrics",
    "Status",
    "View",
    "registry_metrics",
]
