"""Whole fields: tiling, scale, detection and instances, with a stand-in model whose per-pixel
probabilities depend on the pixel's colour alone (so tiled and whole-image predictions agree)."""

from __future__ import annotations

import itertools
import tracemalloc

import cv2
import numpy as np
import pytest

from wbcseg.fields import choose_mode, estimate_cell_diameter, resolve_scale, segment_field
from wbcseg.fields_detect import field_tone, looks_like_nucleus, nucleus_evidence, nucleus_map
from wbcseg.fields_scale import Scale, ScaleError, given_scale, training_cell_diameter
from wbcseg.measure import measurement_columns
from wbcseg.tiling import gaussian_importance, predict_strips, predict_tiled, window_starts

from stand_ins import BACKGROUND, NUCLEUS, draw_field, stain_segmenter


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


# --------------------------------------------------------------------------- tiling


def test_gaussian_importance_peaks_at_the_centre_and_is_never_zero():
    weights = gaussian_importance(64)
    assert weights.shape == (64, 64) and weights.dtype == np.float32
    assert weights[32, 32] == weights.max() == 1 and weights.min() > 0
    assert weights[32, 0] < weights[32, 16] < weights[32, 32]


@pytest.mark.parametrize("length, tile, step", [(32, 32, 0.5), (100, 32, 0.5), (1000, 128, 0.5), (70, 32, 1.0), (95, 32, 0.3)])
def test_windows_cover_the_side_with_bounded_steps(length, tile, step):
    starts = window_starts(length, tile, step)
    assert starts[0] == 0 and starts[-1] == length - tile
    assert all(0 < b - a <= tile * step + 1 for a, b in itertools.pairwise(starts))


@pytest.mark.parametrize("shape", [(20, 25), (32, 32), (70, 95), (100, 41)])
@pytest.mark.parametrize("step", [0.5, 0.3, 1.0])
def test_tiled_prediction_equals_untiled_prediction(shape, step):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    segmenter = stain_segmenter()
    whole = segmenter.predict_probabilities(image[None])[0]
    tiled = predict_tiled(image, segmenter.predict_probabilities, 32, step, batch_size=5)
    assert tiled.shape == whole.shape
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=2e-6)


def test_tiles_overlap_and_are_blended():
    """A model that answers each tile with one constant reveals the blending: pixels between tile
    centres get a mixture of their tiles, weighted towards the nearer centre."""
    class TileIndex:
        count = 0

        def __call__(self, batch):
            out = np.zeros((*batch.shape[:3], 2), np.float32)
            for k in range(len(batch)):
                out[k, ..., self.count % 2] = 1  # alternate tiles vote for class 0 and class 1
                self.count += 1
            return out

    probs = predict_tiled(np.zeros((32, 64, 3), np.uint8), TileIndex(), 32, 0.5)
    first = probs[16, :, 0]  # tiles start at 0, 16, 32 (centres 16, 32, 48) and vote 0, 1, 0
    assert first[0] == 1 and first[32] == pytest.approx(0.0, abs=0.05) and 0.2 < first[24] < 0.8
    assert first[16] > first[20] > first[24] > first[28] > first[32]
    np.testing.assert_allclose(probs.sum(-1), 1, atol=1e-6)


def test_a_large_field_holds_one_band_of_probabilities_at_a_time():
    image = np.empty((1024, 4096, 3), np.uint8)
    image[:] = BACKGROUND
    full_map = image.shape[0] * image.shape[1] * 3 * 4  # float32 probabilities of the whole image: 48 MiB
    segmenter = stain_segmenter()
    heights = [len(band) for _, band in predict_strips(image[:256], segmenter.predict_probabilities, 64)]
    assert max(heights) <= 64 and sum(heights) == 256
    tracemalloc.start()
    probability = nucleus_map(image, segmenter)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert probability.shape == image.shape[:2] and not probability.any()
    assert peak < full_map / 4, f"peak {peak / 2**20:.1f} MiB while the whole map is {full_map / 2**20:.0f} MiB"


def test_the_tiled_pass_has_no_tta_whatever_the_segmenters():
    image, _ = draw_field((300, 300), [(150, 150, 20)])
    seen = {}
    for tta in ("none", "dihedral"):
        segmenter = stain_segmenter(tta=tta)
        nucleus_map(image, segmenter)
        seen[tta] = segmenter.model.images
    assert seen["dihedral"] == seen["none"] > 0


# --------------------------------------------------------------------------- cells and instances


def test_two_touching_cells_are_two_instances():
    image, truth = draw_field((160, 200), [(80, 70, 20), (80, 109, 20)])
    result = segment_field(image, stain_segmenter(), Scale(40, "cell_diameter"))
    assert len(result.cells) == 2 and result.instances.max() == 2
    for cell in result.cells:
        predicted = result.instances == cell.id
        true_id = np.bincount(truth[predicted]).argmax()
        assert iou(predicted, truth == true_id) > 0.9
        assert (result.classes[predicted] == 2).sum() == cell.measurements["nucleus_area_px"] > 0
    assert not (result.classes[result.instances == 0] > 0).any()


def test_a_cell_much_larger_than_the_field_scale_is_segmented_whole():
    """Its first crop, at the field's scale, is narrower than the cell; the second is sized to it."""
    image, truth = draw_field((200, 260), [(100, 60, 20), (100, 170, 44)])
    result = segment_field(image, stain_segmenter(), Scale(40, "cell_diameter"))  # first crops: 71 px
    assert len(result.cells) == 2
    for cell_id in (1, 2):
        predicted_id = np.bincount(result.instances[truth == cell_id]).argmax()
        assert iou(result.instances == predicted_id, truth == cell_id) > 0.88


def test_the_lobes_of_one_nucleus_make_one_cell():
    image, truth = draw_field((120, 120), [(60, 60, 22, True)])
    nuclei, _ = cv2.connectedComponents((image[..., 1] == NUCLEUS[1]).astype(np.uint8))
    assert nuclei - 1 == 2  # the drawing has two separate lobes
    result = segment_field(image, stain_segmenter(), Scale(44, "cell_diameter"))
    assert len(result.cells) == 1
    assert iou(result.instances == 1, truth == 1) > 0.9


def test_an_empty_field_gives_no_cell():
    """Red cells look like cytoplasm to the stand-in, as they often do to the real model, so a
    crop centred anywhere would show a 'cell'; without a nucleus, none may be reported."""
    rng = np.random.default_rng(1)
    red = [(int(y), int(x), 14) for y, x in rng.integers(10, 190, (25, 2))]
    image, _ = draw_field((200, 200), [], red)
    segmenter = stain_segmenter()
    given = segment_field(image, segmenter, Scale(40, "cell_diameter"))
    assert given.cells == () and not given.instances.any() and not given.classes.any()
    assert segmenter.model.calls > 0  # the tiled pass did look
    assert resolve_scale(image, segmenter) is None
    estimated = segment_field(image, segmenter, None)
    assert estimated.cells == () and estimated.scale is None and not estimated.instances.any()


def test_nucleus_class_on_something_paler_than_a_nucleus_is_not_a_cell():
    """The real model's nucleus class also fires on red-cell rims; a nucleus must be darker than
    half the field's median green, as the rims are not."""
    image, _ = draw_field((160, 220), [(80, 60, 20), (80, 160, 20)])
    image[(image == BACKGROUND).all(-1)] = (200, 175, 185)  # a dim field: median green 175
    rows, cols = np.indices(image.shape[:2])
    image[np.hypot(rows - 80, cols - 160) < 9] = (150, 92, 160)  # nucleus to the model, yet paler than 175 / 2
    result = segment_field(image, stain_segmenter(), Scale(40, "cell_diameter"))
    assert [round(c.measurements["centroid_x"]) for c in result.cells] == [60]


def test_a_dark_blob_the_model_is_unsure_of_is_not_a_cell():
    """Dark red cells can pass the darkness check, and the real model then ranks nucleus first on
    them but with less confidence than on any nucleus: such a group is dropped."""
    image, _ = draw_field((160, 220), [(80, 60, 20), (80, 160, 20)])
    rows, cols = np.indices(image.shape[:2])
    image[np.hypot(rows - 80, cols - 160) < 9] = (150, 88, 160)  # dark enough (215 / 2), nucleus at p = 0.7
    segmenter = stain_segmenter()
    assert segmenter.predict_probabilities(image[None, 70:90, 150:170])[0, 10, 10].argmax() == 2  # nucleus
    result = segment_field(image, segmenter, Scale(40, "cell_diameter"))
    assert [round(c.measurements["centroid_x"]) for c in result.cells] == [60]


def test_a_pale_nucleus_counts_when_it_is_blue_and_a_pale_pink_blob_does_not():
    """Some nuclei are paler than DARK_FRACTION of the field's green but blue-purple; red-cell
    overlaps as pale are pink. The stand-in model never ranks nucleus first on a pale pixel, so the
    evidence is judged directly."""
    field = np.full((40, 160, 3), (225, 200, 215), np.uint8)  # pinkish: blue minus red -10
    colours = {"pale blue": (110, 120, 190), "pale pink": (200, 120, 150), "dark pink": (150, 90, 120), "very pale blue": (130, 150, 210)}
    for k, colour in enumerate(colours.values()):
        field[10:30, 10 + 40 * k : 30 + 40 * k] = colour
    tone = field_tone(field)
    probability = np.full(field.shape[:2], 240, np.uint8)
    group = np.ones((20, 20), bool)
    evidence = {name: nucleus_evidence(field, tone, probability, group, (10 + 40 * k, 10)) for k, name in enumerate(colours)}
    assert evidence["pale blue"].darkness == pytest.approx(0.6) and evidence["pale blue"].blueness == pytest.approx(90)
    assert evidence["pale pink"].darkness == pytest.approx(0.6) and evidence["pale pink"].blueness == pytest.approx(-40)
    assert {name: looks_like_nucleus(e) for name, e in evidence.items()} == {
        "pale blue": True, "pale pink": False, "dark pink": True, "very pale blue": False,
    }
    unsure = nucleus_evidence(field, tone, np.full(field.shape[:2], 200, np.uint8), group, (10, 10))
    assert not looks_like_nucleus(unsure)  # blue, pale enough, but the model is not sure


def test_cell_measurements_and_the_border_flag():
    image, truth = draw_field((150, 220), [(70, 60, 20), (75, 205, 20)])  # the second is cut by the right edge
    segmenter = stain_segmenter(pixel_size=12 / 40)
    result = segment_field(image, segmenter, resolve_scale(image, segmenter, pixel_size=segmenter.pixel_size))
    assert result.scale.source == "pixel_size" and result.scale.cell_diameter == pytest.approx(40)
    inside, cut = sorted(result.cells, key=lambda c: c.measurements["centroid_x"])
    assert not inside.touches_border and cut.touches_border
    m = inside.measurements
    assert list(m) == measurement_columns(segmenter.pixel_size)  # the columns of crop mode
    assert abs(m["bbox_x"] - 40) <= 2 and abs(m["bbox_y"] - 50) <= 2 and abs(m["bbox_width"] - 40) <= 3 and abs(m["bbox_height"] - 40) <= 3
    assert (m["centroid_x"], m["centroid_y"]) == pytest.approx((60, 70), abs=1)
    assert m["wbc_area_px"] == (result.instances == inside.id).sum()
    assert m["wbc_area_um2"] == pytest.approx(m["wbc_area_px"] * (12 / 40) ** 2)
    assert m["nc_ratio"] == pytest.approx(m["nucleus_area_px"] / m["cytoplasm_area_px"]) and m["n_components"] == 1
    assert 0.5 < m["mean_confidence"] <= 1
    assert iou(result.instances == cut.id, truth == 2) > 0.9


# --------------------------------------------------------------------------- scale


def test_scale_estimate_follows_a_rescaled_image():
    image, _ = draw_field((300, 400), [(70, 80, 32), (190, 250, 36), (220, 80, 30)], [(40, 330, 14), (260, 350, 14)])
    segmenter = stain_segmenter()
    estimate = estimate_cell_diameter(image, segmenter)
    assert estimate == pytest.approx(2 * 32, rel=0.1)  # the median cell
    for factor in (0.5, 2.0):
        rescaled = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
        assert estimate_cell_diameter(rescaled, segmenter) / estimate == pytest.approx(factor, rel=0.1)


def test_scale_estimate_follows_the_nucleus_not_the_specks_around_it():
    # One white cell among five specks as dark as a nucleus (platelets, overlapping red cells):
    # the crop model outlines a small false cell around each speck, which must not outvote the
    # one nucleus.
    image, _ = draw_field((300, 400), [(150, 200, 40)])
    rows, cols = np.indices(image.shape[:2])
    for y, x in ((40, 40), (40, 360), (260, 40), (260, 360), (150, 330)):
        image[np.hypot(rows - y, cols - x) < 6] = NUCLEUS
    assert estimate_cell_diameter(image, stain_segmenter()) == pytest.approx(80, rel=0.1)


def test_scale_estimate_runs_its_rounds_without_tta_and_its_last_with_the_segmenters():
    image, _ = draw_field((300, 400), [(70, 80, 32), (190, 250, 36)])
    segmenter = stain_segmenter(tta="dihedral")
    estimate = estimate_cell_diameter(image, segmenter)
    assert estimate == pytest.approx(estimate_cell_diameter(image, stain_segmenter()), rel=0.05)
    views = segmenter.model.batches
    # the two blobs' crops: one view each in every round, eight in the last one only
    assert len(views) >= 2 and views[-1] == 8 * 2 and max(views[:-1]) == 2


def test_cells_estimated_narrower_than_the_minimum_are_not_cells():
    image, _ = draw_field((300, 400), [(70, 80, 12), (190, 250, 12)])
    assert estimate_cell_diameter(image, stain_segmenter()) is None
    assert estimate_cell_diameter(cv2.resize(image, None, fx=2, fy=2), stain_segmenter()) == pytest.approx(48, rel=0.1)


def test_a_scale_that_would_blow_up_the_field_is_refused():
    image, _ = draw_field((300, 400), [(70, 80, 26)])
    with pytest.raises(ScaleError, match="megapixels"):
        segment_field(image, stain_segmenter(), Scale(0.5, "cell_diameter"))


def test_a_field_without_anything_dark_has_no_scale_estimate():
    image, _ = draw_field((100, 100), [], [(50, 50, 14)])
    assert estimate_cell_diameter(image, stain_segmenter()) is None


def test_training_cell_diameter_is_measured_after_the_resize_to_model_size():
    rows, cols = np.indices((120, 120))
    maps = [np.where(np.hypot(rows - 60, cols - 60) < r, 1, 0).astype(np.uint8) for r in (25, 30, 35)]
    maps[1][55:65, 55:65] = 2  # the nucleus is part of the cell
    assert training_cell_diameter(maps, 128) == pytest.approx(60 * 128 / 120, rel=0.03)


def test_scale_given_by_the_user():
    assert given_scale(cell_diameter=55).cell_diameter == 55
    assert given_scale(pixel_size=0.1).cell_diameter == pytest.approx(120)
    assert given_scale() is None
    assert not given_scale(pixel_size=0.1).estimated
    assert given_scale(cell_diameter=50, pixel_size=0.1) == Scale(50, "cell_diameter")  # measured on the user's own cells
    with pytest.raises(ScaleError, match="positive"):
        given_scale(cell_diameter=-3)


@pytest.mark.parametrize("shape, diameter, mode", [((120, 120), 75, "crop"), ((300, 300), 150, "crop"), ((480, 640), 60, "field"), ((3000, 4000), 150, "field")])
def test_auto_mode_tells_crops_from_fields(shape, diameter, mode):
    chosen, reason = choose_mode(shape, Scale(diameter, "estimate"))
    assert chosen == mode and f"{shape[1]}x{shape[0]}" in reason and "diameters across" in reason and "estimated" in reason


def test_auto_mode_never_calls_an_image_without_a_nucleus_a_crop():
    assert choose_mode((120, 120), None)[0] == "field"


def test_auto_mode_on_images():
    crop, _ = draw_field((60, 60), [(30, 30, 20)])
    field, _ = draw_field((200, 300), [(60, 70, 20), (150, 200, 20)])
    segmenter = stain_segmenter()
    assert choose_mode(crop.shape, resolve_scale(crop, segmenter))[0] == "crop"
    assert choose_mode(field.shape, resolve_scale(field, segmenter))[0] == "field"
