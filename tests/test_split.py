import pandas as pd
import pytest

from wbcseg import split


@pytest.fixture
def samples():
    rows = []
    for dataset, n in [(1, 60), (2, 30)]:
        for i in range(n):
            rows.append({"sample_id": f"d{dataset}_{i:03d}", "dataset": dataset, "cell_type": 1 + i % 4})
    rows.append({"sample_id": "d1_999", "dataset": 1, "cell_type": 5})  # a lone basophil, as in Dataset 1
    return pd.DataFrame(rows)


def test_split_is_deterministic_and_complete(samples):
    a = split.make_split(samples, 0.2, 0.2, seed=7)
    b = split.make_split(samples.sample(frac=1, random_state=1), 0.2, 0.2, seed=7)
    assert a.set_index("sample_id")["split"].equals(b.set_index("sample_id")["split"])
    assert set(a["split"]) == {"train", "val", "test"} and len(a) == len(samples)
    assert not split.make_split(samples, 0.2, 0.2, seed=8)["split"].equals(a["split"])


def test_split_is_stratified_by_dataset_and_cell_type(samples):
    assigned = split.make_split(samples, 0.2, 0.2, seed=0)
    test_share = assigned.groupby(["dataset", "cell_type"])["split"].apply(lambda s: (s == "test").mean())
    assert test_share.drop((1, 5)).between(0.1, 0.3).all()
    assert (assigned["split"] == "test").mean() >= 0.2


def test_tiny_subset_falls_back_to_dataset_strata(samples):
    tiny = split.limit_per_dataset(samples, 10)
    assigned = split.make_split(tiny, 0.2, 0.2, seed=0)
    assert assigned.groupby("dataset")["split"].apply(lambda s: (s == "test").sum()).min() >= 1


def test_kfold_folds_are_disjoint_and_cover_everything(samples):
    folds = split.kfold_assignments(samples, 5, seed=0)
    assert sorted(folds.index) == sorted(samples.index) and (folds >= 0).all()
    assert sorted(folds.unique()) == [0, 1, 2, 3, 4]
    assert folds.value_counts().max() - folds.value_counts().min() <= 2


def test_select_and_limit(samples):
    assigned = split.make_split(samples, 0.2, 0.2, seed=0)
    test2 = split.select(assigned, "test", datasets=[2])
    assert set(test2["dataset"]) == {2} and set(test2["split"]) == {"test"}
    assert split.limit_per_dataset(samples, 10).groupby("dataset").size().tolist() == [10, 10]
