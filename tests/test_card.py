"""The model card: one contract, read and checked without TensorFlow."""

from __future__ import annotations

import json
import os

import pytest

from wbcseg import card as wc
from wbcseg.errors import ModelError

from stand_ins import tiny_config

CONFIG = tiny_config(datasets=(1, 2), test_datasets=(1, 2))


@pytest.fixture
def model_dir(tmp_path):
    wc.write_json(tmp_path / wc.CARD_FILE, wc.make_card(CONFIG, val_metrics={"dice": 0.5}))
    return tmp_path


def test_card_round_trip(model_dir):
    card = wc.read_card(model_dir)
    assert (card["task"], card["classes"], card["input_size"], card["card_version"]) == ("tissue", ["background", "cytoplasm", "nucleus"], 96, 1)
    assert card["train_params"]["datasets"] == [1, 2] and card["data"]["commit"].startswith("fa9c016")
    assert "test_metrics" not in card and wc.recorded_inference(card) == wc.PLAIN_INFERENCE


def test_test_metrics_bring_their_inference_options(model_dir):
    options = {"tta": "dihedral", "postprocess": True, "precision": "bfloat16", "engine": "openvino"}
    wc.write_test_metrics(model_dir, {"d1": {"cell": {"dice": 0.9}}}, options)
    card = wc.read_card(model_dir)
    assert card["test_metrics"]["d1"]["cell"]["dice"] == 0.9 and wc.recorded_inference(card) == options
    assert wc.recorded_inference({"inference": {"tta": True}}) == {**wc.PLAIN_INFERENCE, "tta": "flips"}  # an older card


@pytest.mark.parametrize(
    "change, message",
    [
        ({"input_size": "128"}, "input_size must be a whole number >= 96 divisible by 32, got '128'"),
        ({"input_size": 100}, "input_size must .* divisible by 32, got 100"),
        ({"classes": ["background", "cell"]}, "task 'tissue' and classes .* do not agree"),
        ({"backbone": 3}, "backbone must be a name"),
        ({"min_cell_diameter": 96}, r"min_cell_diameter must be a number of input pixels between 0 and input_size \(96\), got 96"),
        ({"min_cell_diameter": "60"}, "min_cell_diameter must be a number"),
    ],
)
def test_a_wrong_card_value_is_named(model_dir, change, message):
    card = json.loads((model_dir / wc.CARD_FILE).read_text())
    (model_dir / wc.CARD_FILE).write_text(json.dumps({**card, **change}))
    with pytest.raises(ModelError, match=f"model_card.json: {message}"):
        wc.read_card(model_dir)


def test_missing_or_broken_files_are_one_line_errors(tmp_path, model_dir):
    with pytest.raises(ModelError, match="model directory not found"):
        wc.read_card(tmp_path / "none")
    with pytest.raises(ModelError, match="no model_card.json"):
        wc.read_card(_empty(tmp_path))
    (model_dir / wc.TEST_METRICS_FILE).write_text('{"d1": ')
    with pytest.raises(ModelError, match="test_metrics.json: the test metrics is not valid JSON"):
        wc.read_card(model_dir)
    (model_dir / wc.TEST_METRICS_FILE).write_text(json.dumps({"inference": {"engine": "onnx"}}))
    with pytest.raises(ModelError, match="inference.engine must be one of auto, tensorflow, openvino, got 'onnx'"):
        wc.read_card(model_dir)
    (model_dir / wc.TEST_METRICS_FILE).write_text(json.dumps({"inference": {"tta": 8}}))
    with pytest.raises(ModelError, match="test_metrics.json: inference.tta: TTA must be one of none, flips, dihedral, got 8"):
        wc.read_card(model_dir)
    (model_dir / wc.CARD_FILE).write_text(json.dumps({"task": "tissue"}))
    with pytest.raises(ModelError, match="model card lacks"):
        wc.read_card(model_dir)


def test_the_scale_that_field_mode_needs_is_recorded_and_read():
    card = wc.make_card(CONFIG, cell_diameter_px=77.4321)
    assert card["scale"] == {"cell_diameter_px": 77.43} and wc.model_cell_diameter(card) == 77.43
    for changed, message in (
        ({"scale": None}, "model_card.json: records no scale.cell_diameter_px .* retrain it"),
        ({"scale": {"cell_diameter_px": -3}}, "must be a positive number of pixels, got -3"),
        ({"task": "binary"}, "this binary model has none"),
    ):
        with pytest.raises(ModelError, match=message):
            wc.model_cell_diameter({**card, **changed})


def test_the_zoom_a_model_was_trained_with_is_recorded():
    assert "min_cell_diameter" not in wc.make_card(CONFIG)
    card = wc.make_card(tiny_config(min_cell_diameter=58.0))
    assert card["min_cell_diameter"] == 58.0 == card["train_params"]["min_cell_diameter"]


def _empty(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


def test_written_files_follow_the_umask(tmp_path):
    before = os.umask(0o027)
    try:
        path = wc.write_json(tmp_path / "x.json", {"a": 1})
    finally:
        os.umask(before)
    assert path.stat().st_mode & 0o777 == 0o640
    assert json.loads(path.read_text()) == {"a": 1}
