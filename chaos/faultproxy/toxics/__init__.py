"""The toxics, one module each, registered by type name as Toxiproxy names them."""

from __future__ import annotations

from chaos.faultproxy.toxics.bandwidth import BandwidthToxic
from chaos.faultproxy.toxics.base import Chunk, Stub, Toxic, ToxicWrapper, pass_through
from chaos.faultproxy.toxics.latency import LatencyToxic
from chaos.faultproxy.toxics.limit_data import LimitDataToxic
from chaos.faultproxy.toxics.registry import register, toxic_class, toxic_types
from chaos.faultproxy.toxics.reset_peer import ResetPeerToxic
from chaos.faultproxy.toxics.slicer import SlicerToxic
from chaos.faultproxy.toxics.slow_close import SlowCloseToxic
from chaos.faultproxy.toxics.timeout import TimeoutToxic

__all__ = [
    "BandwidthToxic",
    "Chunk",
    "LatencyToxic",
    "LimitDataToxic",
    "ResetPeerToxic",
    "SlicerToxic",
    "SlowCloseToxic",
    "Stub",
    "TimeoutToxic",
    "Toxic",
    "ToxicWrapper",
    "pass_through",
    "register",
    "toxic_class",
    "toxic_types",
]
