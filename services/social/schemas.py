"""A feed entry (stored and served as is) and a page of them: declared once in
contracts/api/social.py (the gateway documents the same models)."""

from __future__ import annotations

from contracts.api.social import FeedEntry, FeedPage, Kind

__all__ = ["FeedEntry", "FeedPage", "Kind"]
