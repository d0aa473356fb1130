"""The datasets on disk: fetch and verify the public one, check a lab's own, list their samples,
read images and masks.

The public data is the zxaoyou/segmentation_WBC repository (GPL-3.0; Zheng et al., Micron 2018)
at a pinned commit, Datasets 1 and 2 (ids 1, 2). It is never committed here: `fetch` downloads the
GitHub archive of that commit, or copies a local mirror, and checks every file against the
committed manifest `dataset.sha256`. A lab's own labelled images (an `ExtraDataset`, id = its name)
lie in a folder of their own, images and masks matched by name, and are checked file by file.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from wbcseg.classes import CELL_TYPES, CLASS_NAMES, MASK_VALUES, snap_mask_values
from wbcseg.errors import DataError

DATASET_REPO = "zxaoyou/segmentation_WBC"
DATASET_COMMIT = "fa9c01622f52bccb9aeb8a6f2628f564e377767d"
ARCHIVE_URL = f"https://github.com/{DATASET_REPO}/archive/{DATASET_COMMIT}.zip"
SOURCE_ENV = "WBC_DATA_SOURCE"

DATASETS = (1, 2)
#: The label of all test datasets pooled, beside 'd1', 'd2' (`dataset_label`) in summaries.
ALL_DATASETS = "all"
IMAGE_SUFFIXES = (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff")
#: How a dataset's masks encode the classes: "nearest": grey values, each snapped to the nearest of
#: 0 / 128 / 255 (the public datasets, whose masks hold a few stray values); "grey": exactly
#: 0 / 128 / 255; "classes": the class indices 0 / 1 / 2.
NEAREST = "nearest"
MASK_CONVENTIONS = {"grey": MASK_VALUES, "classes": np.arange(len(CLASS_NAMES), dtype=np.uint8)}
#: A lab dataset's name: its id in params.yaml and its label in reports, distinct from d1, d2 and "all".
DATASET_NAME = re.compile(r"[a-z][a-z0-9_]*")
UNKNOWN_CELL_TYPE = 0


# --------------------------------------------------------------------------- fetch and verify


def read_manifest(path: Path | None = None) -> dict[str, str]:
    """Relative path -> sha256 from a `sha256sum`-style manifest (the packaged one by default)."""
    text = (
        Path(path).read_text()
        if path
        else resources.files("wbcseg").joinpath("dataset.sha256").read_text()
    )
    entries = {}
    for line in text.splitlines():
        if line.strip():
            digest, rel = line.split("  ", 1)
            entries[rel] = digest
    return entries


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_tree(root: Path, manifest: dict[str, str], shown_as: str | None = None) -> None:
    """Raise DataError naming every file under `root` that is missing or differs from the manifest.

    `shown_as` is where the files came from (a mirror, the archive's URL): the message names the
    files there, not in a temporary folder that is gone by the time anybody reads it.
    """
    root = Path(root)
    shown = shown_as or str(root)
    missing = [rel for rel in manifest if not (root / rel).is_file()]
    altered = [
        rel
        for rel, digest in manifest.items()
        if rel not in missing and sha256_file(root / rel) != digest
    ]
    if missing or altered:
        lines = [f"missing: {shown}/{rel}" for rel in missing[:10]]
        lines += [f"checksum mismatch: {shown}/{rel}" for rel in altered[:10]]
        more = len(missing) + len(altered) - len(lines)
        if more > 0:
            lines.append(f"... and {more} more")
        raise DataError(
            f"the dataset at {shown} does not match the manifest "
            f"({len(missing)} missing, {len(altered)} altered): " + "; ".join(lines)
        )


def resolve_source(source: str | os.PathLike | None = None, configured: str | os.PathLike | None = None) -> str | None:
    """The local mirror to copy from: `source` (the command line), else $WBC_DATA_SOURCE, else
    `configured` (params.yaml's data.source), else None (download the archive)."""
    chosen = source or os.environ.get(SOURCE_ENV) or configured or None
    return str(chosen) if chosen else None


def check_source(source: str | None) -> None:
    """DataError unless `source` is None (download) or a folder (its files are verified when fetched)."""
    if source is None:
        return
    origin = Path(source).expanduser()
    if not origin.is_dir():
        raise DataError(f"{origin}: the dataset mirror (from --source, {SOURCE_ENV} or data.source) is not a folder")


def _download_archive(workdir: Path) -> Path:
    import pooch

    archive = pooch.retrieve(ARCHIVE_URL, known_hash=None, path=workdir, progressbar=True)
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(workdir / "unzipped")
    (top,) = (workdir / "unzipped").iterdir()  # segmentation_WBC-<commit>/
    return top


def fetch(dest: str | os.PathLike, source: str | os.PathLike | None = None) -> Path:
    """Put the verified dataset at `dest`, from the local mirror `source` or, when it is None, the
    pinned GitHub archive (callers resolve the source with `resolve_source`).

    Files are staged in a temporary folder beside `dest` and verified against the manifest
    before `dest` is replaced, so a failed fetch leaves the dataset that was there untouched.
    """
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise DataError(f"{dest}: exists and is not a folder; give --out a folder for the dataset")
    source = None if source is None else str(source)
    check_source(source)
    manifest = read_manifest()
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        origin = Path(source).expanduser() if source else _download_archive(staging / "download")
        tree = staging / "tree"
        for rel in manifest:
            src = origin / rel
            if not src.is_file():
                continue  # reported by verify_tree with every other missing file
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, tree / rel)
        tree.mkdir(exist_ok=True)
        verify_tree(tree, manifest, shown_as=str(origin) if source else ARCHIVE_URL)
        old = staging / "old"
        if dest.exists():
            dest.rename(old)  # moved aside, not deleted, until the new tree is in place
        try:
            tree.rename(dest)
        except OSError:
            if old.exists():
                old.rename(dest)
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


# --------------------------------------------------------------------------- samples


def dataset_dir(root: Path, dataset: int) -> Path:
    return Path(root) / f"Dataset {dataset}"


def read_cell_types(root: Path, dataset: int) -> pd.Series:
    """Image number -> cell type (1-5) from the dataset's class-label CSV."""
    path = Path(root) / f"Class Labels of Dataset {dataset}.csv"
    if not path.is_file():
        raise DataError(f"{path}: class-label CSV is missing")
    table = pd.read_csv(path)
    if table.shape[1] != 2:
        raise DataError(f"{path}: expected two columns (image ID, class label), found {table.shape[1]}")
    table.columns = ["image_number", "cell_type"]
    return table.set_index("image_number")["cell_type"]


def dataset_id(value) -> int | str:
    """A dataset's id as params.yaml names it, also when read back from a CSV: 1, 2 or a lab's name."""
    text = str(value)
    return int(text) if text.isdigit() else text


def dataset_label(dataset) -> str:
    """How reports name a dataset: 'd1', 'd2' for the public ones; a lab dataset's name (and 'all')
    as it is."""
    return f"d{dataset}" if isinstance(dataset_id(dataset), int) else str(dataset)


def label_dataset(label: str) -> int | str:
    """The dataset of a label (`dataset_label`'s inverse): 1 for 'd1', a lab dataset's name for itself."""
    return int(label[1:]) if label[:1] == "d" and label[1:].isdigit() else label


def check_dataset_name(name) -> str | None:
    """What is wrong with `name` as a lab dataset's name, or None."""
    if not (isinstance(name, str) and DATASET_NAME.fullmatch(name)) or re.fullmatch(r"d[0-9]+", name) or name == "all":
        return f"a dataset name must be lower-case letters, digits and _, start with a letter, and not be d1, d2 or all; got {name!r}"
    return None


def list_samples(root: str | os.PathLike, datasets=DATASETS, extra=()) -> pd.DataFrame:
    """One row per image: sample_id, dataset, image path, mask path, cell type (1-5) and its name,
    and how its mask encodes the classes (`mask_values`): the public `datasets` under `root`, then
    each `ExtraDataset` of `extra` (cell type 0, 'unknown').

    Raises DataError naming the file when an image has no mask or no cell-type label.
    """
    root = Path(root)
    rows = []
    for dataset in datasets:
        folder = dataset_dir(root, dataset)
        if not folder.is_dir():
            raise DataError(f"{folder}: dataset folder is missing; run `wbcseg fetch` first")
        cell_types = read_cell_types(root, dataset)
        for image in sorted(folder.glob("*.bmp")):
            mask = image.with_suffix(".png")
            if not mask.is_file():
                raise DataError(f"{image}: its mask {mask.name} is missing")
            number = int(image.stem)
            if number not in cell_types.index:
                raise DataError(f"{image}: no cell-type label for image {number} in the class-label CSV")
            rows.append(
                {
                    "sample_id": f"d{dataset}_{image.stem}",
                    "dataset": dataset,
                    "image": str(image),
                    "mask": str(mask),
                    "cell_type": int(cell_types[number]),
                    "mask_values": NEAREST,
                }
            )
    for spec in extra:
        rows += spec.samples()
    if not rows:
        raise DataError(f"{root}: no images found for datasets {[*datasets, *(spec.name for spec in extra)]}")
    samples = pd.DataFrame(rows)
    samples["cell_type_name"] = samples["cell_type"].map(lambda t: CELL_TYPES.get(t, "unknown"))
    return samples


# --------------------------------------------------------------------------- a lab's own dataset


@dataclass(frozen=True)
class ExtraDataset:
    """A lab's labelled images in `folder`: the files matching the glob `images`, each with the mask
    named by the template `masks` ({stem}: the image's name without its extension), both relative
    to `folder`; masks encode the classes as `mask_values` ('grey' or 'classes'); `pixel_size` in
    µm per pixel, where known."""

    name: str
    folder: Path
    images: str = "images/*"
    masks: str = "masks/{stem}.png"
    mask_values: str = "grey"
    pixel_size: float | None = None

    def pairs(self) -> list[tuple[Path, Path]]:
        """(image, mask) paths, sorted; the mask need not exist. DataError when there are no images."""
        if not self.folder.is_dir():
            raise DataError(f"{self.folder}: the folder of dataset {self.name} is missing")
        found = [path for path in self.folder.glob(self.images) if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()]
        masks = {self.folder / self.masks.format(stem=path.stem) for path in found}  # masks may match the images' glob
        images = sorted(path for path in found if path not in masks)
        if not images:
            raise DataError(f"{self.folder}: no images match {self.images!r} (data.extra_datasets.{self.name}.images)")
        return [(image, self.folder / self.masks.format(stem=image.stem)) for image in images]

    def samples(self) -> list[dict]:
        """`list_samples` rows of this dataset; DataError naming the first image without its mask."""
        rows = []
        for image, mask in self.pairs():
            if not mask.is_file():
                raise DataError(f"{image}: its mask {mask} is missing")
            rows.append({"sample_id": f"{self.name}_{image.stem}", "dataset": self.name, "image": str(image), "mask": str(mask),
                         "cell_type": UNKNOWN_CELL_TYPE, "mask_values": self.mask_values})
        return rows

    def problems(self) -> list[str]:
        """Every unusable file, one line each naming it: an image without its mask, an unreadable
        image or mask, a mask whose size differs from its image's or with values outside its convention."""
        found = []
        for image, mask in self.pairs():
            try:
                if not mask.is_file():
                    raise DataError(f"{image}: its mask {mask} is missing")
                read_mask(mask, shape=read_image(image).shape, values=self.mask_values)
            except DataError as exc:
                found.append(str(exc))
        return found


# --------------------------------------------------------------------------- reading


def _open(path: Path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from exc
    return image


def to_rgb_uint8(image: Image.Image) -> np.ndarray:
    """RGB uint8 array from any PIL image: RGBA drops alpha, grey is repeated, 16-bit is rescaled."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if array.max() > 255 else 255.0
        grey = np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    if image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        span = float(array.max() - array.min()) or 1.0
        grey = ((array - array.min()) / span * 255.0 + 0.5).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as an RGB uint8 array (H, W, 3)."""
    return to_rgb_uint8(_open(Path(path)))


def read_mask(path: str | os.PathLike, shape: tuple[int, int] | None = None, values: str = NEAREST) -> np.ndarray:
    """A dataset mask as a class map (H, W) uint8: 0 background, 1 cytoplasm, 2 nucleus.

    `values` is how the mask encodes the classes: NEAREST snaps stray grey values to the nearest
    class value; 'grey' (0 / 128 / 255) and 'classes' (0 / 1 / 2) allow nothing else. With `shape`,
    a mask whose size differs from its image's is an error.
    """
    path = Path(path)
    image = _open(path)
    if image.mode not in ("L", "P", "RGB", "RGBA", "LA"):
        raise DataError(f"{path}: mask mode {image.mode} is not an 8-bit grey mask")
    grey = np.asarray(image.convert("L"))
    if shape is not None and grey.shape != tuple(shape[:2]):
        raise DataError(f"{path}: mask is {grey.shape[1]}x{grey.shape[0]} but its image is {shape[1]}x{shape[0]}")
    if values == NEAREST:
        return snap_mask_values(grey)[0]
    known = MASK_CONVENTIONS[values]
    stray = np.setdiff1d(np.unique(grey), known)
    if stray.size:
        raise DataError(f"{path}: mask holds {', '.join(map(str, stray[:5]))}, not {values} values ({', '.join(map(str, known))})")
    return np.searchsorted(known, grey).astype(np.uint8)


def read_sample(row) -> tuple[np.ndarray, np.ndarray]:
    """The (image, class map) of one row of `list_samples`."""
    image = read_image(row["image"])
    return image, read_mask(row["mask"], shape=image.shape, values=row.get("mask_values", NEAREST))


def mask_value_audit(samples: pd.DataFrame) -> pd.DataFrame:
    """Public masks holding values other than 0/128/255: one row per mask with the stray values."""
    rows = []
    for row in samples.itertuples():
        if getattr(row, "mask_values", NEAREST) != NEAREST:
            continue  # a lab's masks allow no stray value: `ExtraDataset.problems` names any
        grey = np.asarray(_open(Path(row.mask)).convert("L"))
        values, counts = np.unique(grey, return_counts=True)
        stray = {int(v): int(c) for v, c in zip(values, counts) if v not in MASK_VALUES}
        if stray:
            rows.append(
                {
                    "sample_id": row.sample_id,
                    "dataset": row.dataset,
                    "mask": Path(row.mask).name,
                    "stray_values": ", ".join(f"{v} ({c} px)" for v, c in stray.items()),
                    "stray_pixels": sum(stray.values()),
                    "snapped_to": ", ".join(
                        sorted({CLASS_NAMES[snap_mask_values(np.array(v))[0]] for v in stray})
                    ),
                }
            )
    return pd.DataFrame(rows, columns=["sample_id", "dataset", "mask", "stray_values", "stray_pixels", "snapped_to"])


def image_stats(samples: pd.DataFrame) -> pd.DataFrame:
    """Per image: height, width and the fraction of pixels of each class."""
    rows = []
    for _, row in samples.iterrows():
        _, class_map = read_sample(row)
        fractions = np.bincount(class_map.ravel(), minlength=len(CLASS_NAMES)) / class_map.size
        rows.append(
            {"sample_id": row["sample_id"], "dataset": row["dataset"], "height": class_map.shape[0],
             "width": class_map.shape[1], **{f"frac_{name}": f for name, f in zip(CLASS_NAMES, fractions)}}
        )
    return pd.DataFrame(rows)
