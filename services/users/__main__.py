"""`python -m services.users`: run one users instance."""

from __future__ import annotations

from backbone.service import serve
from services.users.app import SPEC
from services.users.config import get_settings

if __name__ == "__main__":
    serve(SPEC, get_settings())
