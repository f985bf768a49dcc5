"""`python -m services.nft`: run one nft instance."""

from __future__ import annotations

from backbone.service import serve
from services.nft.app import SPEC
from services.nft.config import get_settings

if __name__ == "__main__":
    serve(SPEC, get_settings())
