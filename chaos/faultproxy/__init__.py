"""A Toxiproxy-compatible fault-injecting TCP proxy, so chaos drills run anywhere.

    python -m chaos.faultproxy -port 8474 -seed 1      # or in-process:
    async with FaultProxyServer(FaultProxySettings(port=0)) as server:
        ...                                            # drive it with chaos.client

It speaks Toxiproxy 2.x's HTTP API and implements its toxics (latency, bandwidth,
slow_close, timeout, reset_peer, slicer, limit_data) with the same names, attributes
and units. The layout follows Toxiproxy's: `direction`, `toxics/` (one module per toxic
behind a registry), `link` (one direction of one connection), `connection` (a client
and its upstream), `proxy` (one listener), `collection` (names), `api` (the JSON), plus
`metrics`, `server` and `cli`.

Where it deliberately differs from Toxiproxy:
- toxicity outside 0..1 and negative toxic attributes are refused (400 "bad request
  body: ..."); Toxiproxy stores them as given;
- an empty `listen` binds 127.0.0.1:0 rather than every interface;
- a failed `/populate` or `listen` change leaves existing proxies as they were;
- toxicity is drawn once per connection and toxic (again when the toxic is updated),
  not again whenever any toxic of the chain changes;
- removing a `timeout` toxic closes only the connections it was affecting;
- the browser 403 body is JSON, and `/metrics` is always on (no `-proxy-metrics` needed).
"""

from __future__ import annotations

from chaos.faultproxy.collection import ProxyCollection, ProxyPatch, ProxySpec
from chaos.faultproxy.config import FaultProxySettings
from chaos.faultproxy.direction import Direction
from chaos.faultproxy.errors import FaultProxyError
from chaos.faultproxy.metrics import FaultProxyMetrics
from chaos.faultproxy.proxy import Proxy
from chaos.faultproxy.server import VERSION, FaultProxyServer

__all__ = [
    "VERSION",
    "Direction",
    "FaultProxyError",
    "FaultProxyMetrics",
    "FaultProxyServer",
    "FaultProxySettings",
    "Proxy",
    "ProxyCollection",
    "ProxyPatch",
    "ProxySpec",
]
