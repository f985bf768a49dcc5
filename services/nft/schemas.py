"""What the nft API answers: declared once in contracts/api/nft.py (the gateway
documents the same model)."""

from __future__ import annotations

from contracts.api.nft import NftPublic

__all__ = ["NftPublic"]
