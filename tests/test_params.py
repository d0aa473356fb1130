import copy
from pathlib import Path

import pytest
import yaml

from wbcseg.params import ParamsError, check_params, load_params, run_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def params():
    return load_params(REPO / "params.yaml")


def _broken(params, dotted, value):
    out = copy.deepcopy(params)
    node = out
    *parents, last = dotted.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    return out


@pytest.mark.parametrize(
    "dotted, value, message",
    [
        ("model.backbone", "inceptionv9", "model.backbone: unknown backbone 'inceptionv9'"),
        ("model.input_size", 100, "model.input_size: .*divisible by 32, got 100"),
        ("model.input_size", 64, "model.input_size: .*>= 96"),
        ("model.encoder_weights", "/nowhere/encoder.h5", "model.encoder_weights: weights file /nowhere/encoder.h5 does not exist"),
        ("train.task", "nuclei", "train.task: must be one of"),
        ("train.datasets", [3], "train.datasets: must be a non-empty list"),
        ("train.loss", "mse", "train.loss: must be one of"),
        ("train.epochs", 0, "train.epochs: must be a whole number >= 1"),
        ("split.test_fraction", 1.5, "split.test_fraction: must be a fraction"),
        ("variants.original", {"epoch": 3}, r"variants.original: unknown keys \['epoch'\]"),
        ("variants.original", {"datasets": [1, 1]}, "variants.original.datasets"),
        ("evaluate.tta", "yes", "evaluate.tta: must be true or false"),
        ("evaluate.precision", "half", "evaluate.precision: must be one of auto, float32, bfloat16"),
        ("evaluate.engine", "onnx", "evaluate.engine: must be one of auto, tensorflow, openvino"),
        ("crossval.folds", 1, "crossval.folds: must be 0 .* or a whole number >= 2"),
        ("crossval.variant", "best", "crossval.variant: must name a variant"),
    ],
)
def test_bad_param_is_a_clear_error(params, dotted, value, message):
    with pytest.raises(ParamsError, match=message):
        check_params(_broken(params, dotted, value))


def test_missing_group_is_named(params):
    broken = copy.deepcopy(params)
    del broken["split"]
    with pytest.raises(ParamsError, match="split.test_fraction: missing"):
        check_params(broken)


def test_variant_overrides_train_defaults(params):
    main, original = run_config(params, "main"), run_config(params, "original")
    assert (main.task, main.datasets, main.test_datasets) == ("tissue", (1, 2), (1, 2))
    assert (original.task, original.datasets, original.epochs, original.augment) == ("binary", (1,), 15, False)
    assert run_config(params, "d1_to_d2").test_datasets == (2,)
    assert original.classes == ("background", "cell")
    with pytest.raises(ParamsError, match="variants.nope: no such variant"):
        run_config(params, "nope")


def test_load_params_reports_bad_yaml(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("model: [unclosed")
    with pytest.raises(ParamsError, match="params.yaml: not valid YAML"):
        load_params(path)


def test_default_experiment_is_the_tissue_model_on_both_datasets():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    assert raw["train"]["task"] == "tissue" and raw["train"]["datasets"] == [1, 2]
    assert raw["model"] == {"backbone": "inceptionv3", "encoder_weights": None, "input_size": 128}
