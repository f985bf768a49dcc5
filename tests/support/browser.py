"""A page rendered by headless Chromium (Debian's `chromium`), as pixels to check."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest


def screenshot(page: Path, shot: Path, width: int = 1100, height: int = 2200) -> np.ndarray:
    """The page's pixels (height x width x 3-4, floats 0..1); skips without chromium."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--screenshot={shot}", f"--window-size={width},{height}", page.as_uri()],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert shot.exists(), f"chromium wrote no screenshot of {page}"
    pixels: np.ndarray = matplotlib.image.imread(shot)
    return pixels


def assert_drawn(pixels: np.ndarray) -> None:
    """Not blank, and far more distinct colours than a page of text: plots are drawn."""
    assert pixels.std() > 0.05, "the screenshot is blank"
    assert len({tuple(p) for p in pixels[::7, ::7, :3].reshape(-1, 3).round(2)}) > 50
