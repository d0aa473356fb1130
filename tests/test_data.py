import re
import shutil

import numpy as np
import pytest
from PIL import Image

from wbcseg import classes, data


def test_snap_mask_values_maps_to_nearest_class_and_counts_strays():
    grey = np.array([[0, 9, 128, 255], [60, 70, 200, 190]], np.uint8)
    class_map, stray = classes.snap_mask_values(grey)
    assert class_map.tolist() == [[0, 0, 1, 2], [0, 1, 2, 1]]
    assert stray == 5


def test_read_mask_decodes_dataset_convention(tmp_path):
    grey = np.array([[0, 128], [255, 9]], np.uint8)
    Image.fromarray(grey).save(tmp_path / "m.png")
    assert data.read_mask(tmp_path / "m.png").tolist() == [[0, 1], [2, 0]]


def test_read_mask_rejects_size_mismatch(tmp_path):
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(tmp_path / "m.png")
    with pytest.raises(data.DataError, match="m.png.*5x4.*its image is 6x4"):
        data.read_mask(tmp_path / "m.png", shape=(4, 6, 3))


@pytest.mark.parametrize("content, problem", [(b"", "empty"), (b"not an image at all", "not a readable image")])
def test_read_image_names_file_and_problem(tmp_path, content, problem):
    path = tmp_path / "bad.bmp"
    path.write_bytes(content)
    with pytest.raises(data.DataError, match=f"bad.bmp.*{problem}"):
        data.read_image(path)


def test_read_image_converts_modes(tmp_path):
    Image.fromarray(np.full((3, 4, 4), 200, np.uint8), "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(np.full((3, 4), 7, np.uint8), "L").save(tmp_path / "grey.png")
    Image.fromarray(np.full((3, 4), 65535, np.uint16)).save(tmp_path / "deep.png")
    for name, value in [("rgba.png", 200), ("grey.png", 7), ("deep.png", 255)]:
        image = data.read_image(tmp_path / name)
        assert image.shape == (3, 4, 3) and image.dtype == np.uint8 and (image == value).all(), name


def test_list_samples_and_audit_on_the_mirror(mirror):
    samples = data.list_samples(mirror)
    assert samples.groupby("dataset").size().to_dict() == {1: 300, 2: 100}
    assert set(samples["cell_type"]) == {1, 2, 3, 4, 5}
    audit = data.mask_value_audit(samples[samples["dataset"] == 2])
    assert {"d2_034", "d2_047", "d2_050"} <= set(audit["sample_id"])
    assert "9 (22 px)" in audit.set_index("sample_id").loc["d2_050", "stray_values"]


def test_list_samples_names_an_image_without_mask(tmp_path, mirror):
    root = tmp_path / "raw"
    (root / "Dataset 1").mkdir(parents=True)
    shutil.copy(mirror / "Class Labels of Dataset 1.csv", root)
    shutil.copy(mirror / "Dataset 1" / "001.bmp", root / "Dataset 1")
    with pytest.raises(data.DataError, match="001.bmp: its mask 001.png is missing"):
        data.list_samples(root, datasets=[1])


def _small_mirror(tmp_path, mirror, manifest_rows=3):
    """A mirror and manifest of a few files, to test fetch without copying 42 MB each time."""
    manifest = dict(list(data.read_manifest().items())[:manifest_rows])
    src = tmp_path / "mirror"
    for rel in manifest:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(mirror / rel, src / rel)
    return src, manifest


def test_fetch_copies_and_verifies(tmp_path, mirror, monkeypatch):
    src, manifest = _small_mirror(tmp_path, mirror)
    monkeypatch.setattr(data, "read_manifest", lambda path=None: manifest)
    dest = data.fetch(tmp_path / "out" / "raw", src)
    assert sorted(p.name for p in dest.rglob("*") if p.is_file()) == sorted(p.split("/")[-1] for p in manifest)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["raw"]  # no staging left behind


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_fetch_rejects_a_damaged_mirror_naming_its_file_and_keeps_the_old_dataset(tmp_path, mirror, monkeypatch, damage):
    src, manifest = _small_mirror(tmp_path, mirror)
    monkeypatch.setattr(data, "read_manifest", lambda path=None: manifest)
    dest = data.fetch(tmp_path / "out" / "raw", src)
    before = sorted(p.relative_to(dest) for p in dest.rglob("*"))
    victim = src / list(manifest)[1]
    if damage == "corrupt":
        victim.write_bytes(victim.read_bytes()[:-1] + b"x")
    else:
        victim.unlink()
    expected = "checksum mismatch" if damage == "corrupt" else "missing"
    with pytest.raises(data.DataError, match=f"{expected}: {re.escape(str(victim))}"):  # the mirror's file, not a temporary copy
        data.fetch(dest, src)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["raw"]  # no staging left behind
    assert sorted(p.relative_to(dest) for p in dest.rglob("*")) == before  # the verified dataset is still there


def test_source_precedence(monkeypatch):
    monkeypatch.delenv(data.SOURCE_ENV, raising=False)
    assert data.resolve_source(None, None) is None  # download
    assert data.resolve_source(None, "/configured") == "/configured"
    monkeypatch.setenv(data.SOURCE_ENV, "/from-env")
    assert data.resolve_source(None, "/configured") == "/from-env"  # the variable wins over params.yaml
    assert data.resolve_source("/asked", "/configured") == "/asked"  # the command line wins over both


def test_fetch_refuses_a_file_as_destination_or_source(tmp_path, mirror):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(data.DataError, match="a_file: exists and is not a folder"):
        data.fetch(tmp_path / "a_file", mirror)
    with pytest.raises(data.DataError, match="nowhere: the dataset mirror .* is not a folder"):
        data.fetch(tmp_path / "raw", tmp_path / "nowhere")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_manifest_covers_both_datasets():
    manifest = data.read_manifest()
    assert sum(rel.startswith("Dataset 1/") for rel in manifest) == 600
    assert sum(rel.startswith("Dataset 2/") for rel in manifest) == 200
    assert all(len(digest) == 64 for digest in manifest.values())


def test_task_labels():
    class_map = np.array([[0, 1, 2]], np.uint8)
    assert classes.task_labels(class_map, "binary").tolist() == [[0, 1, 1]]
    assert classes.task_labels(class_map, "tissue").tolist() == [[0, 1, 2]]
    with pytest.raises(ValueError, match="unknown task"):
        classes.task_labels(class_map, "nuclei")
