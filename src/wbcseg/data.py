"""The dataset on disk: fetch and verify it, list its samples, read images and masks.

The data is the public zxaoyou/segmentation_WBC repository (GPL-3.0; Zheng et al., Micron 2018)
at a pinned commit. It is never committed here: `fetch` downloads the GitHub archive of that
commit, or copies a local mirror, and checks every file against the committed manifest
`dataset.sha256`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
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


def dataset_label(dataset) -> str:
    """'d1', 'd2' for dataset numbers; ALL_DATASETS stays as it is."""
    return dataset if dataset == ALL_DATASETS else f"d{dataset}"


def list_samples(root: str | os.PathLike, datasets=DATASETS) -> pd.DataFrame:
    """One row per image: sample_id, dataset, image path, mask path, cell type (1-5) and its name.

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
                }
            )
    if not rows:
        raise DataError(f"{root}: no images found for datasets {list(datasets)}")
    samples = pd.DataFrame(rows)
    samples["cell_type_name"] = samples["cell_type"].map(CELL_TYPES)
    return samples


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


def read_mask(path: str | os.PathLike, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A dataset mask as a class map (H, W) uint8: 0 background, 1 cytoplasm, 2 nucleus.

    Stray grey values are snapped to the nearest class value. With `shape`, a mask whose size
    differs from its image's is an error.
    """
    path = Path(path)
    image = _open(path)
    if image.mode not in ("L", "P", "RGB", "RGBA", "LA"):
        raise DataError(f"{path}: mask mode {image.mode} is not an 8-bit grey mask")
    grey = np.asarray(image.convert("L"))
    if shape is not None and grey.shape != tuple(shape[:2]):
        raise DataError(f"{path}: mask is {grey.shape[1]}x{grey.shape[0]} but its image is {shape[1]}x{shape[0]}")
    return snap_mask_values(grey)[0]


def read_sample(row) -> tuple[np.ndarray, np.ndarray]:
    """The (image, class map) of one row of `list_samples`."""
    image = read_image(row["image"])
    return image, read_mask(row["mask"], shape=image.shape)


def mask_value_audit(samples: pd.DataFrame) -> pd.DataFrame:
    """Masks holding values other than 0/128/255: one row per mask with the stray values."""
    rows = []
    for row in samples.itertuples():
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
