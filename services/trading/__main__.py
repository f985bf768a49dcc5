"""`python -m services.trading`: run one trading instance."""

from __future__ import annotations

from backbone.service import serve
from services.trading.app import SPEC
from services.trading.config import get_settings

if __name__ == "__main__":
    serve(SPEC, get_settings())
