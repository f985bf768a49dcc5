"""The whole stack, started the way `make up` starts it: `astra up` as a real process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import Stack, running_stack

__all__ = ["Stack"]


@pytest.fixture
def stack_env() -> dict[str, str]:
    """Extra environment for `astra up`; override it in a test module to shape the stack."""
    return {}


@pytest.fixture
def stack(tmp_path: Path, stack_env: dict[str, str]) -> Iterator[Stack]:
    with running_stack(tmp_path, stack_env) as stack:
        yield stack
