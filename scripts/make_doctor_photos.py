"""Write the photos `imgclass models doctor` checks a model with: models/doctor-*.jpg and models/doctor.json.

    python scripts/make_doctor_photos.py

Public-domain / CC0 photos from scikit-image's data (see each entry's licence), downscaled to a
short side of 320 (above the 256 or fewer pixels every built-in preset resizes a 224 input from) and
stored as JPEG quality 90: tens of KB each.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "models"
SHORT_SIDE = 320

# name -> (scikit-image file, accepted ImageNet-1k classes (index: label), licence, provenance)
PHOTOS = {
    "coffee": (
        "coffee.png",
        {967: "espresso", 968: "cup", 504: "coffee mug"},
        "CC0",
        "scikit-image data coffee.png: photograph by Rachel Michetti, courtesy of Pikolo Espresso Bar",
    ),
    "chelsea": (
        "chelsea.png",
        {281: "tabby", 282: "tiger cat", 285: "Egyptian cat"},
        "CC0",
        "scikit-image data chelsea.png: Chelsea the cat, photograph by Stefan van der Walt",
    ),
    "rocket": (
        "rocket.jpg",
        {657: "missile", 744: "projectile", 812: "space shuttle"},
        "public domain",
        "scikit-image data rocket.jpg: launch of DSCOVR on Falcon 9, photograph by SpaceX (released into the public domain)",
    ),
}


def main(out: Path = OUT) -> None:
    import skimage
    from PIL import Image

    data = Path(skimage.__file__).parent / "data"
    entries = []
    for name, (source, classes, licence, provenance) in PHOTOS.items():
        with Image.open(data / source) as img:
            img = img.convert("RGB")
            scale = SHORT_SIDE / min(img.size)
            if scale < 1:
                img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
            file = f"doctor-{name}.jpg"
            img.save(out / file, "JPEG", quality=90)
        entries.append({"file": file, "classes": {str(k): v for k, v in classes.items()}, "licence": licence,
                        "source": provenance})  # fmt: skip
    record = {
        "comment": "Photos with known ImageNet-1k answers for `imgclass models doctor`; written by "
        "scripts/make_doctor_photos.py from scikit-image's data (licences per photo).",
        "photos": entries,
    }
    (out / "doctor.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
