"""A lab's own labelled images as a dataset: checked file by file, listed, split by dataset, read
back, scored under its own name; fine-tuning starts from a trained model's weights."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from wbcseg import cli, data, report, scoring, split
from wbcseg.errors import DataError, ModelError, ParamsError
from wbcseg.params import check_params, extra_datasets, load_params, run_config

from lab_data import write_lab_dataset
from projects import REPO


@pytest.fixture(scope="module")
def params():
    return load_params(REPO / "params.yaml")


def with_lab(params, **spec):
    out = copy.deepcopy(params)
    out["data"]["extra_datasets"] = {"lab": spec}
    return out


@pytest.fixture
def lab(tmp_path) -> data.ExtraDataset:
    write_lab_dataset(tmp_path / "data" / "extra" / "lab", n=12, mask_values="grey")
    return data.ExtraDataset("lab", tmp_path / "data" / "extra" / "lab", mask_values="grey", pixel_size=0.1)


# --------------------------------------------------------------------------- params


@pytest.mark.parametrize(
    "change, message",
    [
        ({"data": {"extra_datasets": {"d3": {}}}}, "data.extra_datasets: a dataset name must be .* not be d1, d2 or all; got 'd3'"),
        ({"data": {"extra_datasets": {"Lab": {}}}}, "got 'Lab'"),
        ({"data": {"extra_datasets": {"lab": {"masks": "masks/x.png"}}}}, r"data.extra_datasets: lab.masks: must be a file name template with \{stem\}"),
        ({"data": {"extra_datasets": {"lab": {"mask_values": "rgb"}}}}, "lab.mask_values: must be one of grey, classes"),
        ({"data": {"extra_datasets": {"lab": {"pixel_size": 0}}}}, "lab.pixel_size: must be a positive number"),
        ({"data": {"extra_datasets": {"lab": {"folder": "x"}}}}, "lab.folder: unknown key; a dataset knows images, masks"),
        ({"train": {"datasets": [1, "lab"]}}, "train.datasets: 'lab' is not a dataset of data.extra_datasets"),
        ({"variants": {"main": {"test_datasets": ["lab"]}}}, "variants.main.test_datasets: 'lab' is not a dataset"),
        ({"finetuned": {"tuned": {"epochs": 2}}}, "finetuned.tuned.init_from: missing"),
        ({"finetuned": {"main": {"init_from": "models/main"}}}, "finetuned.main: a variant has that name too"),
        ({"finetuned": {"tuned": {"init_from": "models/main", "epoch": 2}}}, "finetuned.tuned.epoch: unknown key"),
        ({"variants": {"main": {"init_from": "models/x"}}}, "variants.main.init_from: unknown key"),
        ({"compare": {"targets": {"main": {"lab": {"cell": 0.9}}}}}, r"compare.targets.main: 'lab' must be a dataset label \(d1, d2\)"),
        ({"crossval": {"folds": 3, "fold": 3}}, r"crossval.fold: must be below crossval.folds \(3\), got 3"),
        ({"train": {"distribute": "multiworker"}}, "train.distribute: must be one of none, mirrored"),
    ],
)
def test_bad_dataset_finetune_and_distribute_params_are_named(params, change, message):
    broken = copy.deepcopy(params)
    for group, values in change.items():
        broken[group] = {**broken[group], **values}
    with pytest.raises(ParamsError, match=message):
        check_params(broken)


def test_a_lab_dataset_can_be_trained_tested_and_fine_tuned_on(params, tmp_path):
    good = with_lab(params, mask_values="classes", pixel_size=0.25)
    good["train"]["datasets"] = [1, 2, "lab"]
    good["compare"]["targets"]["main"]["lab"] = {"cell": 0.9}
    good["finetuned"] = {"lab_finetuned": {"init_from": "models/main", "datasets": ["lab"], "learning_rate": 1e-4}}
    check_params(good)
    assert run_config(good, "main").datasets == (1, 2, "lab")
    tuned = run_config(good, "lab_finetuned")
    assert (tuned.init_from, tuned.datasets, tuned.test_datasets, tuned.learning_rate) == ("models/main", ("lab",), ("lab",), 1e-4)
    (spec,) = extra_datasets(good, tmp_path)
    assert (spec.folder, spec.mask_values, spec.pixel_size, spec.images) == (tmp_path / "data" / "extra" / "lab", "classes", 0.25, "images/*")


# --------------------------------------------------------------------------- reading and checking


def test_lab_samples_are_listed_after_the_public_ones(lab, mirror):
    samples = data.list_samples(mirror, datasets=[2], extra=[lab])
    assert samples.groupby("dataset", sort=False).size().to_dict() == {2: 100, "lab": 12}
    rows = samples[samples["dataset"] == "lab"]
    assert rows["sample_id"].iloc[0] == "lab_cell_00" and set(rows["cell_type_name"]) == {"unknown"}
    image, labels = data.read_sample(rows.iloc[0])
    assert labels.shape == image.shape[:2] and set(np.unique(labels)) == {0, 1, 2}


@pytest.mark.parametrize("convention", ["grey", "classes"])
def test_both_mask_conventions_read_as_the_same_class_map(tmp_path, convention):
    write_lab_dataset(tmp_path / "g", n=2, mask_values="grey", seed=1)
    write_lab_dataset(tmp_path / convention, n=2, mask_values=convention, seed=1)
    read = [data.read_mask(folder / "masks" / "cell_00.png", values=c) for folder, c in ((tmp_path / "g", "grey"), (tmp_path / convention, convention))]
    np.testing.assert_array_equal(*read)


def test_every_bad_file_is_one_problem_naming_it(lab):
    masks = lab.folder / "masks"
    (masks / "cell_00.png").unlink()  # no mask
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(masks / "cell_01.png")  # another size
    grey = np.asarray(Image.open(masks / "cell_02.png")).copy()
    grey[0, :3] = (7, 200, 7)
    Image.fromarray(grey).save(masks / "cell_02.png")  # unknown values
    (lab.folder / "images" / "cell_03.png").write_bytes(b"not a png")  # unreadable
    problems = lab.problems()
    assert len(problems) == 4
    assert problems[0].startswith(f"{lab.folder / 'images' / 'cell_00.png'}: its mask") and "missing" in problems[0]
    assert problems[1].startswith(f"{masks / 'cell_01.png'}: mask is 10x10 but its image is")
    assert problems[2] == f"{masks / 'cell_02.png'}: mask holds 7, 200, not grey values (0, 128, 255)"
    assert problems[3].startswith(f"{lab.folder / 'images' / 'cell_03.png'}: not a readable image")
    with pytest.raises(DataError, match="cell_00.png: its mask .* is missing"):
        lab.samples()  # the pipeline's reading stops at the first


def test_an_empty_or_missing_folder_is_named(tmp_path):
    with pytest.raises(DataError, match="the folder of dataset lab is missing"):
        data.ExtraDataset("lab", tmp_path / "nowhere").pairs()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no images match 'images/\*' \(data.extra_datasets.lab.images\)"):
        data.ExtraDataset("lab", tmp_path / "empty").pairs()


def test_masks_beside_their_images_are_not_taken_for_images(tmp_path):
    folder = write_lab_dataset(tmp_path / "lab", n=3)
    for path in (folder / "masks").iterdir():
        path.rename(folder / "images" / f"{path.stem}_mask.png")
    spec = data.ExtraDataset("lab", folder, images="images/*.png", masks="images/{stem}_mask.png", mask_values="classes")
    assert [image.name for image, _ in spec.pairs()] == ["cell_00.png", "cell_01.png", "cell_02.png"]
    assert spec.problems() == []


def test_check_prints_one_line_per_bad_file(params, tmp_path, monkeypatch):
    monkeypatch.delenv(data.SOURCE_ENV, raising=False)
    folder = write_lab_dataset(tmp_path / "data" / "extra" / "lab", n=4)
    (folder / "masks" / "cell_01.png").unlink()
    (folder / "masks" / "cell_02.png").unlink()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(with_lab(params, mask_values="classes")))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(["check", "--params", str(tmp_path / "params.yaml")])
    assert code == 2
    assert err.getvalue().splitlines() == [
        f"wbcseg check: error: {folder / 'images' / name}: its mask {folder / 'masks' / name} is missing" for name in ("cell_01.png", "cell_02.png")
    ]


# --------------------------------------------------------------------------- split, labels, tables


def test_split_stratifies_the_lab_dataset_by_dataset_and_reads_back(lab, mirror, tmp_path):
    samples = data.list_samples(mirror, datasets=[1], extra=[lab])
    assigned = split.make_split(samples, 0.25, 0.25, seed=0)
    assert assigned[assigned["dataset"] == "lab"]["split"].value_counts().to_dict() == {"train": 6, "val": 3, "test": 3}
    path = tmp_path / "split.csv"
    split.write_split(assigned, path)
    back = split.read_split(path, mirror, [lab])
    assert back["dataset"].tolist() == assigned["dataset"].tolist()  # 1 and 'lab', not '1'
    assert back.set_index("sample_id")["mask_values"].loc["lab_cell_00"] == "grey"
    assert len(split.select(back, "test", ["lab"])) == 3


def test_reports_name_a_lab_dataset_by_its_name():
    assert [data.dataset_label(d) for d in (1, "2", "lab", "all")] == ["d1", "d2", "lab", "all"]
    assert [data.label_dataset(label) for label in ("d1", "lab", "d2x")] == [1, "lab", "d2x"]
    per_image = pd.DataFrame({"sample_id": ["a", "b", "c"], "dataset": [1, "lab", "lab"], "target": "cell", "dice": [0.9, 0.8, 0.6],
                              "iou": 0.5, "precision": 0.5, "recall": 0.5, "pixel_accuracy": 0.5, "hd95": 1.0})
    summary = scoring.summarize(per_image)
    assert summary["dataset"].tolist() == ["d1", "lab", "all"]
    assert report.datasets_label((1, 2, "lab")) == "d1+d2+lab"


def test_versus_table_shows_the_gain_over_the_base_model():
    base = pd.DataFrame({"dataset": ["lab", "lab", "all", "all"], "target": ["cell", "nucleus"] * 2, "dice_mean": [0.80, 0.70] * 2, "n_images": 5})
    tuned = base.assign(dice_mean=[0.90, 0.65] * 2)
    table = report.versus_table(base, tuned, names=("models/main", "lab_finetuned"))
    assert list(table) == ["dataset", "target", "dice models/main", "dice lab_finetuned", "gain", "n_images"]
    assert table["dataset"].tolist() == ["lab", "lab"]  # 'all' would repeat the one dataset
    assert table["gain"].round(4).tolist() == [0.1, -0.05]
    two = pd.concat([base.iloc[:2], base.iloc[:2].assign(dataset="d1"), base.iloc[2:]], ignore_index=True)
    assert set(report.versus_table(two, two)["dataset"]) == {"lab", "d1", "all"}


# --------------------------------------------------------------------------- fine-tuning's start


def test_fine_tuning_starts_from_the_base_weights_and_the_card_says_so(tissue_model_dir, binary_model_dir):
    import dataclasses

    from wbcseg.card import make_card
    from wbcseg.data import sha256_file
    from wbcseg.network import build_unet, load_model, load_weights_from

    base, base_card = load_model(tissue_model_dir)
    config = dataclasses.replace(run_config(load_params(REPO / "params.yaml"), "main"), input_size=96, init_from=str(tissue_model_dir))
    model = build_unet(config.backbone, config.task, config.input_size)
    load_weights_from(model, tissue_model_dir, config)
    for mine, theirs in zip(model.get_weights(), base.get_weights()):
        np.testing.assert_array_equal(mine, theirs)
    card = make_card(config)
    assert card["init_from"] == {"model_dir": str(tissue_model_dir), "sha256": sha256_file(tissue_model_dir / "model.keras"),
                                 "datasets": base_card["data"]["datasets"]}
    with pytest.raises(ModelError, match=f"{binary_model_dir}: cannot start from this model: it has task binary \\(this run: tissue\\)"):
        load_weights_from(model, binary_model_dir, config)
