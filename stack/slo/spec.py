"""`alerts/slos.yaml`, read and checked: Sloth's `prometheus/v1` format, so the real
`sloth generate -i alerts/slos.yaml` accepts the same file.

    spec = load_spec(Path("alerts/slos.yaml"))
    for slo in spec.slos:
        slo.name, slo.objective, slo.kind, slo.slo_class, slo.threshold_seconds

What Sloth leaves free-form we pin down with labels on each SLO, because both the
alert generator and the load gate need to know what an SLO measures without
parsing PromQL:

    labels:
      kind: availability | latency | freshness
      slo_class: read | write | auth        (availability, latency: the gateway's route class)
      group: <consumer group>               (freshness)
      threshold_seconds: "0.25"             (latency, freshness: a histogram bucket boundary)

A file that is not valid is refused with the file, the SLO and the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

Kind = Literal["availability", "latency", "freshness"]
SloClass = Literal["read", "write", "auth"]


class SloSpecError(ValueError):
    """The SLO file cannot be used; the message names the file, the SLO and the reason."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Events(_Strict):
    error_query: str
    total_query: str

    @field_validator("error_query", "total_query")
    @classmethod
    def _has_window(cls, query: str) -> str:
        if "{{.window}}" not in query:
            raise ValueError("must contain {{.window}} (Sloth substitutes each window there)")
        return query


class Sli(_Strict):
    events: Events


class Alert(_Strict):
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    disable: bool = False


class Alerting(_Strict):
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9]*$")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    page_alert: Alert = Alert()
    ticket_alert: Alert = Alert()


class SloLabels(_Strict):
    kind: Kind
    slo_class: SloClass | None = None
    group: str | None = None
    threshold_seconds: float | None = Field(default=None, gt=0)


class SloDefinition(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    objective: float = Field(gt=0, lt=100)  # percent, as Sloth has it
    description: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    sli: Sli
    alerting: Alerting

    @property
    def meta(self) -> SloLabels:
        return SloLabels.model_validate(
            {k: v for k, v in self.labels.items() if k in SloLabels.model_fields}
        )

    @property
    def kind(self) -> Kind:
        return self.meta.kind

    @property
    def slo_class(self) -> SloClass | None:
        return self.meta.slo_class

    @property
    def threshold_seconds(self) -> float | None:
        return self.meta.threshold_seconds

    @property
    def target_ratio(self) -> float:
        """The objective as a ratio: 99.9 -> 0.999."""
        return self.objective / 100

    @property
    def error_budget(self) -> float:
        return 1 - self.target_ratio


class SloFile(_Strict):
    version: Literal["prometheus/v1"]
    service: str
    labels: dict[str, str] = Field(default_factory=dict)
    slos: list[SloDefinition] = Field(min_length=1)


def load_spec(path: Path) -> SloFile:
    """The checked SLO file; `SloSpecError` naming file, SLO and reason otherwise."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise SloSpecError(f"{path}: cannot read: {e}") from e
    try:
        spec = SloFile.model_validate(doc)
    except ValidationError as e:
        raise SloSpecError(_explain(path, doc, e)) from e
    seen: set[str] = set()
    for slo in spec.slos:
        if slo.name in seen:
            raise SloSpecError(f"{path}: slo {slo.name!r}: name used twice")
        seen.add(slo.name)
        try:
            meta = slo.meta
        except ValidationError as e:
            raise SloSpecError(f"{path}: slo {slo.name!r}: labels: {_first(e)}") from e
        if meta.kind in ("availability", "latency") and meta.slo_class is None:
            raise SloSpecError(f"{path}: slo {slo.name!r}: labels.slo_class is required")
        if meta.kind in ("latency", "freshness") and meta.threshold_seconds is None:
            raise SloSpecError(f"{path}: slo {slo.name!r}: labels.threshold_seconds is required")
    return spec


def _first(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


def _explain(path: Path, doc: object, error: ValidationError) -> str:
    first = error.errors()[0]
    loc = list(first["loc"])
    where = ".".join(str(p) for p in loc)
    if len(loc) >= 2 and loc[0] == "slos" and isinstance(loc[1], int) and isinstance(doc, dict):
        slos = doc.get("slos") or []
        name = slos[loc[1]].get("name", f"#{loc[1]}") if loc[1] < len(slos) else f"#{loc[1]}"
        field = ".".join(str(p) for p in loc[2:])
        return f"{path}: slo {name!r}: {field}: {first['msg']}"
    return f"{path}: {where}: {first['msg']}"
