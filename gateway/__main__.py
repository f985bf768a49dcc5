"""`python -m gateway`: logging and tracing for this process, then uvicorn."""

from __future__ import annotations

import uvicorn

from backbone.service.http_server import server_options
from backbone.telemetry.logs import setup_logging
from backbone.telemetry.tracing import build_tracer_provider, install_tracer_provider
from gateway.app import create_app
from gateway.config import get_settings


def main() -> None:
    settings = get_settings()
    tel = settings.telemetry
    setup_logging(
        service="gateway",
        instance_id=settings.instance_id,
        level=tel.log_level,
        log_dir=tel.log_dir or settings.run_dir / "log",
        stream=tel.log_stderr,
    )
    if tel.traces_dir is None:
        tel = tel.model_copy(update={"traces_dir": settings.run_dir / "traces"})
    provider = build_tracer_provider(
        tel, service="gateway", version=settings.version, instance_id=settings.instance_id
    )
    if provider is not None:
        install_tracer_provider(provider)
    try:
        uvicorn.run(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
            # The gateway is the edge: the client address is the peer's, never a header's.
            proxy_headers=False,
            timeout_graceful_shutdown=20,
            # Header size/count, URL length, header and idle timeouts, connections per
            # address: enforced in the HTTP protocol, before the app sees a request.
            **server_options(settings.edge),
        )
    finally:
        if provider is not None:
            provider.shutdown()


if __name__ == "__main__":
    main()
