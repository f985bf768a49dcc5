"""`python -m services.social`: run one social instance."""

from __future__ import annotations

from backbone.service import serve
from services.social.app import SPEC
from services.social.config import get_settings

if __name__ == "__main__":
    serve(SPEC, get_settings())
