"""Toxic types by name (Toxiproxy's `toxics.Register` / `toxics.New`)."""

from __future__ import annotations

from typing import TypeVar

from chaos.faultproxy.errors import InvalidToxicType
from chaos.faultproxy.toxics.base import Toxic

_REGISTRY: dict[str, type[Toxic]] = {}

T = TypeVar("T", bound=type[Toxic])


def register(cls: T) -> T:
    """Class decorator: make `cls` available under `cls.type_name`."""
    if not cls.type_name:
        raise ValueError(f"{cls.__name__} has no type_name")
    _REGISTRY[cls.type_name] = cls
    return cls


def toxic_class(type_name: str) -> type[Toxic]:
    try:
        return _REGISTRY[type_name]
    except KeyError:
        raise InvalidToxicType() from None


def toxic_types() -> list[str]:
    return sorted(_REGISTRY)
