"""Where the users service publishes its JWKS: configured, or found through the registry.

Discovery only believes signed records that name an allowed host, so a key set is
only ever fetched from an instance the stack registered itself.
"""

from __future__ import annotations

from backbone.errors import RegistryError
from backbone.registry import Discovery

JWKS_PATH = "/.well-known/jwks.json"


def users_jwks_url(discovery: Discovery, configured: str = "") -> str:
    """`configured` when set, else the JWKS URL of the first ready users instance."""
    if configured:
        return configured
    instances = discovery.instances("users")
    if not instances:
        raise RegistryError("no ready users instance to fetch the JWKS from")
    return instances[0].url.rstrip("/") + JWKS_PATH
