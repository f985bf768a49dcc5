"""`host:port` strings as Go writes and reads them (`[::1]:80`, `:8080`, `localhost:0`)."""

from __future__ import annotations


def split_host_port(addr: str) -> tuple[str, int]:
    """Split `addr`; `ValueError` carries Go's wording so it can reach the API unchanged."""
    host, sep, port_text = addr.rpartition(":")
    if not sep:
        raise ValueError(f"address {addr}: missing port in address")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"address {addr}: too many colons in address")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"address {addr}: invalid port")
    return host, int(port_text)


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
