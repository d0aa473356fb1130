"""The Segmenter API: native-resolution labels and probabilities, TTA, batching, options from the card.

Exact checks use a stand-in model that maps each pixel's colour to probabilities; the real-model
checks use the untrained 96-px fixture model, whose masks are garbage but deterministic.
"""

from __future__ import annotations

import numpy as np
import pytest

from wbcseg import segmenter
from wbcseg.card import PLAIN_INFERENCE as PLAIN
from wbcseg.card import read_card
from wbcseg.engine import native_bfloat16
from wbcseg.segmenter import Segmenter, SegmentResult

from stand_ins import colour_segmenter

RNG = np.random.default_rng(0)


def rgb(h, w):
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_segment_gives_native_resolution_labels_and_probabilities():
    result = colour_segmenter("tissue").segment(rgb(45, 70))
    assert isinstance(result, SegmentResult)
    assert result.labels.shape == (45, 70) and result.labels.dtype == np.uint8
    assert result.probabilities.shape == (45, 70, 3) and result.probabilities.dtype == np.float32
    np.testing.assert_allclose(result.probabilities.sum(-1), 1, atol=1e-5)
    np.testing.assert_array_equal(result.labels, result.probabilities.argmax(-1))
    assert result.measurements["wbc_area_px"] == int((result.labels > 0).sum())


def test_binary_probabilities_have_two_channels():
    result = colour_segmenter("binary").segment(rgb(40, 40))
    assert result.probabilities.shape == (40, 40, 2)
    assert set(np.unique(result.labels)) <= {0, 1}


@pytest.mark.parametrize("tta", ["flips", "dihedral", True])
def test_tta_undoes_its_views(tta):
    # the stand-in maps each pixel's colour alone, so a view undone wrongly would move noise around
    images = [rgb(50, 64), rgb(64, 50)]
    plain = list(colour_segmenter("tissue").segment_many(images))
    averaged = list(colour_segmenter("tissue", tta=tta).segment_many(images))
    for a, b in zip(plain, averaged):
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)


def test_tta_views_are_distinct_and_undone():
    x = RNG.random((2, 6, 6, 1))
    for name, views in segmenter.TTA_VIEWS.items():
        seen = [segmenter.view(x, *v) for v in views]
        assert len({a.tobytes() for a in seen}) == len(views), name
        for v, y in zip(views, seen):
            np.testing.assert_array_equal(segmenter.undo_view(y, *v), x)
    assert len(segmenter.TTA_VIEWS["dihedral"]) == 8
    np.testing.assert_array_equal(segmenter.view(x, 2, True), x[:, ::-1])  # flips' third view: top to bottom


def test_tta_is_named_or_true_or_false():
    assert [colour_segmenter("tissue", tta=t).tta for t in (False, True, "dihedral")] == ["none", "flips", "dihedral"]
    with pytest.raises(ValueError, match="TTA must be one of none, flips, dihedral"):
        colour_segmenter("tissue", tta="eight")


def test_segment_many_batches_like_segment():
    segmenter = colour_segmenter("tissue", postprocess=True, pixel_size=0.25)
    images = [rgb(30 + i, 40) for i in range(5)]
    batched = list(segmenter.segment_many(iter(images), batch_size=2))
    assert len(batched) == 5
    for image, result in zip(images, batched):
        single = segmenter.segment(image)
        np.testing.assert_array_equal(single.labels, result.labels)
        assert single.measurements == result.measurements
        assert result.measurements["n_components"] <= 1
        assert result.measurements["wbc_area_um2"] == result.measurements["wbc_area_px"] * 0.0625


def test_segment_rejects_non_rgb_arrays():
    with pytest.raises(ValueError, match="RGB uint8"):
        colour_segmenter("tissue").segment(np.zeros((10, 10), np.uint8))


def test_real_model_round_trip_and_tta(tissue_model_dir, cell_image):
    segmenter = Segmenter.load(tissue_model_dir, tta=True)
    assert segmenter.card == read_card(tissue_model_dir)
    assert (segmenter.task, segmenter.input_size, segmenter.classes) == ("tissue", 96, ("background", "cytoplasm", "nucleus"))
    image = cell_image[0]
    first, again = segmenter.segment(image), next(segmenter.segment_many([image, image[::-1]], batch_size=2))
    assert first.probabilities.shape == (120, 120, 3)
    np.testing.assert_allclose(first.probabilities.sum(-1), 1, atol=1e-4)
    np.testing.assert_allclose(first.probabilities, again.probabilities, atol=1e-4)
    same_model = Segmenter(segmenter.model, segmenter.card, tta=True)
    np.testing.assert_allclose(same_model.segment(image).probabilities, first.probabilities, atol=1e-5)


@pytest.mark.skipif(not native_bfloat16(), reason="this CPU has no native bfloat16")
def test_bfloat16_segmenter_agrees_with_float32(tissue_model_dir, cell_image):
    image = cell_image[0]
    exact = Segmenter.load(tissue_model_dir).segment(image)
    fast = Segmenter.load(tissue_model_dir, precision="bfloat16")
    assert fast.precision == "bfloat16"
    mixed = fast.segment(image)
    change = np.abs(mixed.probabilities - exact.probabilities).max()
    assert 0 < change < 0.05
    # This barely trained model has many near ties; the label may change only where float32's
    # two best classes are closer than bfloat16 moved the probabilities.
    top2 = np.sort(exact.probabilities, axis=-1)[..., -2:]
    decided = top2[..., 1] - top2[..., 0] > 2 * change
    assert decided.mean() > 0.5
    np.testing.assert_array_equal(mixed.labels[decided], exact.labels[decided])


def test_options_come_from_the_card_unless_asked(monkeypatch):
    recorded = {"inference": {"tta": "dihedral", "postprocess": True, "precision": "float32", "engine": "tensorflow"}}
    assert segmenter.inference_options(recorded) == (recorded["inference"], [])
    assert segmenter.inference_options(recorded, tta="none")[0]["tta"] == "none"
    assert segmenter.inference_options({})[0] == {"tta": "none", "postprocess": False, "precision": "float32", "engine": "tensorflow"}
    older = {"inference": {**recorded["inference"], "tta": True}}  # cards written before TTA had names
    assert segmenter.inference_options(older)[0]["tta"] == "flips"


def test_a_recorded_bfloat16_falls_back_to_float32_where_it_is_not_native(monkeypatch):
    card = {"inference": {"precision": "bfloat16"}}
    monkeypatch.setattr(segmenter, "native_bfloat16", lambda: True)
    assert segmenter.inference_options(card) == ({**PLAIN, "precision": "bfloat16"}, [])
    monkeypatch.setattr(segmenter, "native_bfloat16", lambda: False)
    options, (note,) = segmenter.inference_options(card)
    assert options["precision"] == "float32" and "does not run natively; using float32" in note
    assert segmenter.inference_options(card, precision="bfloat16") == ({**PLAIN, "precision": "bfloat16"}, [])  # asked for: as asked


def test_a_recorded_openvino_gives_way_to_tensorflow_where_a_gpu_is_seen(monkeypatch):
    card = {"inference": {"engine": "openvino"}}
    monkeypatch.setattr(segmenter, "resolve_engine", lambda name: "openvino")  # no GPU
    assert segmenter.inference_options(card) == ({**PLAIN, "engine": "openvino"}, [])
    monkeypatch.setattr(segmenter, "resolve_engine", lambda name: "tensorflow")  # a GPU
    options, (note,) = segmenter.inference_options(card)
    assert options["engine"] == "tensorflow" and "this machine has a GPU; using TensorFlow" in note
    assert segmenter.inference_options(card, engine="openvino")[0]["engine"] == "openvino"
