"""The signed form of an `InstanceInfo` as stored in Redis.

    {"body": "<InstanceInfo JSON>", "sig": "<hex HMAC-SHA256(token, body)>"}

The body travels as a string so the signature covers the exact bytes written,
never a re-serialisation. Discovery checks the body names the key it was read
from, so a signed record copied under another service or id is refused too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Literal

from pydantic import ValidationError

from backbone.registry.models import InstanceInfo

RejectReason = Literal["signature", "invalid"]


class RecordRejected(Exception):
    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: RejectReason = reason
        self.detail = detail


def _signature(token: str, body: str) -> str:
    return hmac.new(token.encode(), body.encode(), hashlib.sha256).hexdigest()


def encode_record(info: InstanceInfo, token: str) -> str:
    body = info.model_dump_json()
    return json.dumps({"body": body, "sig": _signature(token, body)}, separators=(",", ":"))


def decode_record(raw: bytes | str, token: str, *, service: str, instance_id: str) -> InstanceInfo:
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
    return info
