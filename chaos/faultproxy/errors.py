"""Domain errors of the fault proxy: one root, one small class per failure.

The messages are Toxiproxy's (`api.go`), so clients that match on them keep working;
HTTP status codes are chosen in one table in `chaos.faultproxy.api`, not here.
"""

from __future__ import annotations


class FaultProxyError(Exception):
    """Root of every error the fault proxy raises on purpose."""

    message = "fault proxy error"

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail
        super().__init__(self.message if detail is None else f"{self.message}: {detail}")

    def __str__(self) -> str:
        return str(self.args[0])


class BadRequestBody(FaultProxyError):
    message = "bad request body"


class MissingField(FaultProxyError):
    message = "missing required field"


class ProxyNotFound(FaultProxyError):
    message = "proxy not found"


class ProxyAlreadyExists(FaultProxyError):
    message = "proxy already exists"


class InvalidStream(FaultProxyError):
    message = "stream was invalid, can be either upstream or downstream"


class InvalidToxicType(FaultProxyError):
    message = "invalid toxic type"


class ToxicAlreadyExists(FaultProxyError):
    message = "toxic already exists"


class ToxicNotFound(FaultProxyError):
    message = "toxic not found"


class UserAgentNotAllowed(FaultProxyError):
    """A browser called the API; Toxiproxy refuses them so web pages cannot drive it."""

    message = "User agent not allowed"


class ListenError(FaultProxyError):
    """A proxy could not bind its `listen` address; the text is Go's `net.Listen` error."""

    def __init__(self, text: str) -> None:
        self.detail = text
        Exception.__init__(self, text)


class DuplicateProxyName(FaultProxyError):
    """Two entries of one `/populate` request share a name (Toxiproxy answers 500)."""

    def __init__(self, name: str) -> None:
        self.detail = name
        Exception.__init__(self, f"duplicate proxy name {name!r}".replace("'", '"'))
