"""SLOs as code: `alerts/slos.yaml` (Sloth's `prometheus/v1` format) and what is derived from it."""

from stack.slo.spec import SloDefinition, SloFile, SloSpecError, load_spec

__all__ = ["SloDefinition", "SloFile", "SloSpecError", "load_spec"]
