"""`python -m gateway`: the process kit's `serve` with the gateway's app and edge limits."""

from __future__ import annotations

from backbone.process import serve
from gateway.app import create_app
from gateway.config import get_settings


def main() -> None:
    settings = get_settings()
    serve(
        lambda: create_app(settings),
        settings=settings,
        # Header size/count, URL length, header and idle timeouts, connections per
        # address: enforced in the HTTP protocol, before the app sees a request.
        limits=settings.edge,
        # The gateway is the edge: the client address is the peer's, never a header's.
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
