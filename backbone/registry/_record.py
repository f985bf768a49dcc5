"""The signed form of an `InstanceInfo` as stored in Redis.

    {"body": "<InstanceInfo JSON>", "sig": "<hex HMAC-SHA256(token, body)>"}

The body travels as a string so the signature covers the exact bytes written,
never a re-serialisation. Discovery checks the body names the key it was read
from, so a signed record copied under another service or id is refused too, and
that its URL is plain http(s) to an allowed host: a signature proves who wrote a
record, not that the address in it is one the stack should call.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from collections.abc import Iterable
from typing import Literal
from urllib.parse import urlsplit

from pydantic import ValidationError

from backbone.registry.models import InstanceInfo

RejectReason = Literal["signature", "invalid", "host_not_allowed"]


class RecordRejected(Exception):
    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: RejectReason = reason
        self.detail = detail


class HostPolicy:
    """The hosts a record's URL may name: IP networks and exact host names.

    Entries come normalised from `RegistrySettings.allowed_hosts` (networks in
    CIDR form, names lower-case). Names are compared, never resolved: resolving
    would let whoever controls DNS decide, and costs I/O on every refresh.
    """

    __slots__ = ("_names", "_networks")

    def __init__(self, allowed: Iterable[str]) -> None:
        networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        names: set[str] = set()
        for entry in allowed:
            try:
                networks.append(ipaddress.ip_network(entry))
            except ValueError:
                names.add(entry.lower().rstrip("."))
        self._networks = tuple(networks)
        self._names = frozenset(names)

    def check(self, url: str) -> None:
        """`RecordRejected("host_not_allowed")` unless `url` is http(s) to an allowed host."""
        try:
            parts = urlsplit(url)
            host = parts.hostname
            parts.port  # noqa: B018 -- raises ValueError on a port that is not a number
        except ValueError as e:
            raise RecordRejected("host_not_allowed", f"unparsable URL {url[:200]!r}") from e
        if parts.scheme not in ("http", "https"):
            raise RecordRejected("host_not_allowed", f"scheme {parts.scheme[:20]!r} is not http(s)")
        if not host:
            raise RecordRejected("host_not_allowed", f"no host in {url[:200]!r}")
        if parts.username is not None or parts.password is not None:
            # `http://127.0.0.1@evil.example` reads as local to a person, not to a client.
            raise RecordRejected("host_not_allowed", "URL carries user info")
        if not self.allows(host):
            raise RecordRejected("host_not_allowed", f"host {host[:200]!r} is not allowed")

    def allows(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return host.lower().rstrip(".") in self._names
        return any(address in network for network in self._networks)

    def __repr__(self) -> str:
        shown = [*map(str, self._networks), *sorted(self._names)]
        return f"<HostPolicy {' '.join(shown)}>"


def _signature(token: str, body: str) -> str:
    return hmac.new(token.encode(), body.encode(), hashlib.sha256).hexdigest()


def encode_record(info: InstanceInfo, token: str) -> str:
    body = info.model_dump_json()
    return json.dumps({"body": body, "sig": _signature(token, body)}, separators=(",", ":"))


def decode_record(
    raw: bytes | str, token: str, *, service: str, instance_id: str, hosts: HostPolicy
) -> InstanceInfo:
    """The verified record stored for `service`/`instance_id`, or `RecordRejected`."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise RecordRejected("invalid", f"not JSON: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("body"), str):
        raise RecordRejected("invalid", "no string 'body'")
    body: str = doc["body"]
    sig = doc.get("sig")
    if not isinstance(sig, str) or not hmac.compare_digest(sig, _signature(token, body)):
        raise RecordRejected("signature", "missing or wrong signature")
    try:
        info = InstanceInfo.model_validate_json(body)
    except ValidationError as e:
        raise RecordRejected("invalid", f"signed body is not an InstanceInfo: {e}") from e
    if (info.service, info.instance_id) != (service, instance_id):
        raise RecordRejected(
            "invalid", f"record of {info.service}/{info.instance_id} stored under another key"
        )
    hosts.check(info.url)
    return info
