"""The toxics of one proxy, per direction, and the open links they apply to.

Toxiproxy's `toxic_collection.go`: a toxic added, updated or removed here is applied at
once to every open link of its direction, so toxics affect connections that are already
open, not only new ones. Every method is synchronous, so each is atomic on the loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING

from chaos.faultproxy.direction import Direction
from chaos.faultproxy.errors import BadRequestBody, ToxicAlreadyExists, ToxicNotFound
from chaos.faultproxy.metrics import ProxyStats
from chaos.faultproxy.toxics import toxic_class

# Defined beside `Toxic` (the link needs it too); still importable from here, its old home.
from chaos.faultproxy.toxics.base import ToxicWrapper as ToxicWrapper

if TYPE_CHECKING:
    from chaos.faultproxy.link import Link


class ToxicCollection:
    """toxics = ToxicCollection(stats); toxics.add_json({"type": "latency", ...})"""

    def __init__(self, stats: ProxyStats) -> None:
        self._stats = stats
        self._chains: dict[Direction, list[ToxicWrapper]] = {d: [] for d in Direction}
        # Insertion-ordered, so a seeded run draws toxicity for open links in a fixed order.
        self._links: dict[Link, None] = {}

    def __iter__(self) -> Iterator[ToxicWrapper]:
        """Upstream toxics first, then downstream, each in the order added (as Toxiproxy)."""
        for direction in Direction:
            yield from self._chains[direction]

    def __len__(self) -> int:
        return sum(len(chain) for chain in self._chains.values())

    def find(self, name: str) -> ToxicWrapper | None:
        for wrapper in self:
            if wrapper.name == name:
                return wrapper
        return None

    def get(self, name: str) -> ToxicWrapper:
        wrapper = self.find(name)
        if wrapper is None:
            raise ToxicNotFound()
        return wrapper

    def add_json(self, body: object) -> ToxicWrapper:
        """Create a toxic from a decoded JSON body; checks run in Toxiproxy's order."""
        if not isinstance(body, dict):
            raise BadRequestBody("a toxic must be a JSON object")
        stream = _string(body, "stream", "downstream")
        toxic_type = _string(body, "type", "")
        name = _string(body, "name", "")
        toxicity = _toxicity(body.get("toxicity", 1.0))
        direction = Direction.parse(stream)
        if not name:
            name = f"{toxic_type}_{stream}"
        cls = toxic_class(toxic_type)
        if self.find(name) is not None:
            raise ToxicAlreadyExists()
        toxic = cls.from_attributes(body.get("attributes"))
        wrapper = ToxicWrapper(name, toxic_type, stream, direction, toxicity, toxic)
        self._chains[direction].append(wrapper)
        self._stats.toxic_added(toxic_type, direction)
        for link in self._links_of(direction):
            link.add_toxic(wrapper)
        return wrapper

    def update_json(self, name: str, body: object) -> ToxicWrapper:
        """Change `attributes` (merged) and `toxicity`; name, type and stream stay."""
        old = self.get(name)
        if not isinstance(body, dict):
            raise BadRequestBody("a toxic must be a JSON object")
        toxicity = _toxicity(body.get("toxicity", old.toxicity))
        toxic = type(old.toxic).from_attributes(body.get("attributes"), base=old.toxic)
        new = dataclasses.replace(old, toxicity=toxicity, toxic=toxic)
        chain = self._chains[old.direction]
        chain[chain.index(old)] = new
        for link in self._links_of(old.direction):
            link.update_toxic(new)
        return new

    def remove(self, name: str) -> None:
        wrapper = self.get(name)
        self._chains[wrapper.direction].remove(wrapper)
        self._stats.toxic_removed(wrapper.type, wrapper.direction)
        for link in self._links_of(wrapper.direction):
            link.remove_toxic(name)

    def reset(self) -> None:
        for wrapper in list(self):
            self.remove(wrapper.name)

    def attach(self, link: Link) -> None:
        """Register a new link and give it the toxics of its direction."""
        self._links[link] = None
        for wrapper in self._chains[link.direction]:
            link.add_toxic(wrapper)

    def detach(self, link: Link) -> None:
        self._links.pop(link, None)

    def _links_of(self, direction: Direction) -> list[Link]:
        return [link for link in self._links if link.direction is direction]


def _string(body: dict[str, object], key: str, default: str) -> str:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise BadRequestBody(
            f"cannot unmarshal {type(value).__name__} into toxic.{key} of type string"
        )
    return value


def _toxicity(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequestBody(f"cannot unmarshal {type(value).__name__} into toxicity of type float")
    if not 0.0 <= value <= 1.0:
        raise BadRequestBody(f"toxicity must be between 0 and 1, got {value}")
    return float(value)
