"""The feed's opaque cursor: the position (score, entry id) of the last entry of a page.

Encoded as unpadded base64url of `"<score>.<entry id>"`. Clients must treat it
as opaque; anything that does not decode to a position this service could have
issued is refused (the route answers 422).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_MAX_SCORE = 10**15  # ms since the epoch; about the year 33658
MAX_LENGTH = 96  # characters of an encoded cursor (issued ones are about 70)


class InvalidCursor(ValueError):
    pass


@dataclass(frozen=True, slots=True, order=True)
class Cursor:
    score: int  # occurred_at, ms since the epoch
    entry_id: str

    def encode(self) -> str:
        raw = f"{self.score}.{self.entry_id}".encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    @classmethod
    def decode(cls, text: str) -> Cursor:
        if not text or len(text) > MAX_LENGTH:
            raise InvalidCursor("cursor has the wrong length")
        try:
            padded = text + "=" * (-len(text) % 4)
            raw = base64.b64decode(padded, altchars=b"-_", validate=True).decode("ascii")
        except (binascii.Error, ValueError) as e:
            raise InvalidCursor("cursor is not base64url") from e
        score, sep, entry_id = raw.partition(".")
        if not sep or not score.isdigit() or not _ID.match(entry_id):
            raise InvalidCursor("cursor does not name a feed position")
        value = int(score)
        if value > _MAX_SCORE:
            raise InvalidCursor("cursor is out of range")
        return cls(value, entry_id)
