"""Random square crops of real photos, saved as JPEGs: calibration and held-out sets for tests and benchmarks."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image


def random_crops(sources: Iterable[Path], folder: Path, per: int, seed: int = 0) -> list[Path]:
    """`per` square crops (35-100% of the short side) of each photo, about half mirrored, seeded."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for source in sources:
        img = Image.open(source).convert("RGB")
        w, h = img.size
        for k in range(per):
            side = int(rng.uniform(0.35, 1.0) * min(w, h))
            x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
            crop = img.crop((x, y, x + side, y + side))
            if rng.random() < 0.5:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            path = folder / f"{Path(source).stem}-{k:02d}.jpg"
            crop.save(path, quality=92)
            out.append(path)
    return out
