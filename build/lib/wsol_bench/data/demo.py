"""The embedded demo set: real photographs that ship inside installed packages.

The images (scikit-image's and scikit-learn's sample photographs, permissive licences)
are copied at run time from the installed packages into a folder the harness owns (by
default ``outputs/.demo_images``, never a data folder of the user's); only the hand-drawn
ILSVRC-format XML boxes live in the repository (``data/demo/annotations``, shipped inside
the package as ``wsol_bench.demo_annotations``).
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DemoImage:
    image_id: str
    package: str  # importable package that ships the file
    relative_path: str  # path inside the package
    synset: str  # the ILSVRC class the photograph shows


DEMO_IMAGES = (
    DemoImage("demo_camera", "skimage", "data/camera.png", "n04485082"),  # tripod (greyscale)
    DemoImage("demo_chelsea", "skimage", "data/chelsea.png", "n02123045"),  # tabby cat
    DemoImage("demo_china", "sklearn", "datasets/images/china.jpg", "n03877845"),  # palace
    DemoImage("demo_coffee", "skimage", "data/coffee.png", "n07920052"),  # espresso
    DemoImage("demo_motorcycle", "skimage", "data/motorcycle_left.png", "n03785016"),  # moped
    DemoImage("demo_rocket", "skimage", "data/rocket.jpg", "n03773504"),  # missile
)


def package_file(image: DemoImage) -> Path:
    """Location of a demo photograph inside its installed package."""
    spec = importlib.util.find_spec(image.package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"demo image {image.image_id}: package {image.package!r} is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / image.relative_path
    if not path.is_file():
        raise FileNotFoundError(f"demo image {image.image_id}: {path} is missing from {image.package}")
    return path


def demo_annotations_dir() -> Path:
    """The folder of the demo's XML files (inside the installed package)."""
    import importlib.resources

    return Path(str(importlib.resources.files("wsol_bench.demo_annotations")))


def prepare_demo_images(directory: str | Path) -> list[Path]:
    """Copy the demo photographs into ``directory`` (skipping those already there)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for image in DEMO_IMAGES:
        source = package_file(image)
        target = directory / f"{image.image_id}{source.suffix}"
        if not target.is_file() or target.stat().st_size != source.stat().st_size:
            shutil.copyfile(source, target)
        written.append(target)
    return written
