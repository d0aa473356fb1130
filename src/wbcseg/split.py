"""The seeded train / val / test split, stratified by dataset and cell type (a lab's dataset has
none: by dataset alone), and k folds."""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import StratifiedKFold, train_test_split

SPLITS = ("train", "val", "test")
#: Where a sample's files are and how to read its mask: listed afresh when the split is read back,
#: not kept in split.csv, so that the file is the same on every machine.
FILE_COLUMNS = ("image", "mask", "mask_values")


def strata(samples: pd.DataFrame, min_count: int) -> pd.Series:
    """Dataset x cell type. Cell types with fewer than `min_count` images in their dataset are pooled
    into a 'rare' stratum of that dataset, and that into the dataset's largest stratum if it is
    still too small (Dataset 1 has a single basophil)."""
    dataset = samples["dataset"].astype(str)
    key = dataset + "_" + samples["cell_type"].astype(str)
    key = key.where(key.map(key.value_counts()) >= min_count, dataset + "_rare")
    small = key.map(key.value_counts()) < min_count
    largest = key.groupby(dataset).agg(lambda k: k.value_counts().idxmax())
    return key.where(~small, dataset.map(largest))


def make_split(samples: pd.DataFrame, test_fraction: float, val_fraction: float, seed: int) -> pd.DataFrame:
    """`samples` with a `split` column (train / val / test); the same inputs give the same split."""
    samples = samples.sort_values("sample_id").reset_index(drop=True)
    rest, test = stratified_split(samples, test_fraction, seed)
    train, val = stratified_split(rest, val_fraction / (1 - test_fraction), seed)
    out = samples.copy()
    out["split"] = "train"
    out.loc[val.index, "split"] = "val"
    out.loc[test.index, "split"] = "test"
    return out


def stratified_split(samples: pd.DataFrame, fraction: float, seed: int):
    """(rest, held out): `fraction` of `samples` held out, stratified by dataset x cell type; a subset too small to hold every cell type in both parts
    (a few images for a quick trial) is stratified by dataset alone."""
    try:
        return train_test_split(samples, test_size=fraction, random_state=seed, stratify=strata(samples, 2))
    except ValueError:
        return train_test_split(samples, test_size=fraction, random_state=seed, stratify=samples["dataset"])


def kfold_assignments(samples: pd.DataFrame, folds: int, seed: int) -> pd.Series:
    """Fold number (0..folds-1) for each sample, stratified like the split; folds are disjoint and
    together cover every sample."""
    samples = samples.sort_values("sample_id")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    fold = pd.Series(-1, index=samples.index, name="fold")
    for k, (_, held_out) in enumerate(splitter.split(samples, strata(samples, folds))):
        fold.iloc[held_out] = k
    return fold.reindex(samples.index)


def select(samples: pd.DataFrame, split: str, datasets=None) -> pd.DataFrame:
    """The rows of one split, optionally of some datasets only, in sample_id order."""
    rows = samples[samples["split"] == split]
    if datasets is not None:
        rows = rows[rows["dataset"].isin(list(datasets))]
    return rows.sort_values("sample_id").reset_index(drop=True)


def limit_per_dataset(samples: pd.DataFrame, cap: int | None) -> pd.DataFrame:
    """At most `cap` images of each dataset (the first by sample_id); None keeps all."""
    samples = samples.sort_values("sample_id")
    if cap is None:
        return samples.reset_index(drop=True)
    return samples.groupby("dataset", group_keys=False).head(cap).reset_index(drop=True)


def write_split(assigned: pd.DataFrame, path) -> None:
    """The split (`make_split`'s table) as a CSV, without FILE_COLUMNS."""
    assigned.drop(columns=[c for c in FILE_COLUMNS if c in assigned]).to_csv(path, index=False)


def read_split(path, raw_root, extra=()) -> pd.DataFrame:
    """The split CSV of `write_split`, joined with FILE_COLUMNS of its samples: the public
    datasets' under `raw_root`, the lab datasets' of `extra` (data.ExtraDataset)."""
    from wbcseg.data import DATASETS, dataset_id, list_samples

    assigned = pd.read_csv(path, dtype={"sample_id": str, "dataset": str})
    assigned["dataset"] = assigned["dataset"].map(dataset_id)
    present = set(assigned["dataset"])
    files = list_samples(raw_root, [d for d in DATASETS if d in present], [spec for spec in extra if spec.name in present])
    return assigned.merge(files[["sample_id", *FILE_COLUMNS]], on="sample_id", how="left", validate="one_to_one")
