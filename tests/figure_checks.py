"""Checks shared by the tests of the figures commands write: a real PNG that an image reader opens."""

from __future__ import annotations

from pathlib import Path

from PIL import Image


def assert_png(path: str | Path, *, min_size: tuple[int, int] = (200, 150), software: str | None = None) -> None:
    """``path`` is a complete PNG of at least ``min_size`` (width, height) pixels, not blank, and (when given)
    tagged with the command that wrote it."""
    path = Path(path)
    assert path.is_file(), f"{path} was not written"
    with Image.open(path) as image:
        image.verify()  # checks the chunks and their CRCs
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1], image.size
        lo, hi = image.convert("L").getextrema()
        assert hi - lo > 50, "the figure is blank"
        if software is not None:
            assert image.info.get("Software") == software, image.info
