"""Each kustomization rendered once per session; no kubectl: a visible skip."""

from __future__ import annotations

import pytest

from tests.kubernetes.manifests import RENDERS, KubectlMissing, Obj, render

_cache: dict[str, list[Obj]] = {}


def rendered_objects(name: str) -> list[Obj]:
    """The render of `name` (cached); skips the test, saying why, without kubectl."""
    if name not in _cache:
        try:
            _cache[name] = render(name)
        except KubectlMissing as e:
            pytest.skip(str(e))
    return _cache[name]


@pytest.fixture(params=RENDERS)
def objects(request: pytest.FixtureRequest) -> list[Obj]:
    """Every render in turn: the base and each overlay."""
    return rendered_objects(request.param)


@pytest.fixture
def dev() -> list[Obj]:
    return rendered_objects("overlays/dev")


@pytest.fixture
def prod() -> list[Obj]:
    return rendered_objects("overlays/prod")


@pytest.fixture
def base() -> list[Obj]:
    return rendered_objects("base")
