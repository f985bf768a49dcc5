"""The public API's request and response bodies, one module per service.

Declared once, here, and imported by both sides: the service that serves a route and
the gateway, whose OpenAPI document (gateway/public_api.py) describes the same
models, so the two cannot drift. A model that needs a service module (the trading
service's known symbols, say) stays in that service, on top of the one here.
"""
