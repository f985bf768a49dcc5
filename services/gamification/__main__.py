"""`python -m services.gamification`: run one gamification instance."""

from __future__ import annotations

from backbone.service import serve
from services.gamification.app import SPEC
from services.gamification.config import get_settings

if __name__ == "__main__":
    serve(SPEC, get_settings())
