"""A logger adapter that adds context fields and keeps the caller's `extra=` too.

(The stdlib adapter of Python 3.11 replaces the caller's `extra`; 3.13 grew `merge_extra`.)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from typing import Any


class ContextLogger(logging.LoggerAdapter[logging.Logger]):
    def __init__(self, logger: logging.Logger, context: Mapping[str, object]) -> None:
        super().__init__(logger, dict(context))

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs
