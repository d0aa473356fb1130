"""`wbcseg predict` on a Dask cluster: the same outputs as one process, each image exactly once,
even when a worker is killed in the middle of its chunk.

The workers run stand-in models (tests/stand_ins.py), whose masks are exact, so "the same" means
byte-identical PNGs and equal CSV rows.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wbcseg import cli
from wbcseg.batch import predict_files
from wbcseg.files import LOCK_FILE

from stand_ins import ColourLoader, KillOnceLoader, colour_segmenter

distributed = pytest.importorskip("distributed")
cluster = pytest.importorskip("wbcseg.cluster")

BATCH = 4
N_IMAGES = 50


@pytest.fixture(scope="module")
def client():
    with cluster.dask_client(workers=2) as client:
        yield client


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("cells")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(N_IMAGES):
        side = int(rng.integers(20, 40))
        paths.append(root / ("a" if i % 2 else "b") / f"{i:02d}.png")  # two folders: names below their common folder
        paths[-1].parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (side, side + 3, 3), dtype=np.uint8)).save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def single(images, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single")
    predict_files(colour_segmenter("tissue"), images, out, batch_size=BATCH)
    return out


def rows_of(out: Path) -> list[dict]:
    with open(out / "measurements.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def outputs(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.png"))}


def test_chunks_are_whole_batches_at_least_two_per_worker():
    assert cluster.chunk_size(50, 4, 2) == 12  # 13 batches: 3 per chunk, 5 chunks
    assert cluster.chunk_size(10_000, 32, 2) == 128  # at most MAX_BATCHES_PER_CHUNK batches
    assert cluster.chunk_size(3, 32, 8) == 32


def test_two_workers_write_what_one_process_writes(client, images, single, tmp_path):
    cluster.attach_segmenter(client, ColourLoader())
    counts = cluster.predict_on_cluster(client, images, tmp_path / "out", BATCH)
    assert (counts.ok, counts.failed) == (N_IMAGES, 0)
    assert outputs(tmp_path / "out") == outputs(single)
    assert rows_of(tmp_path / "out") == rows_of(single)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [LOCK_FILE, "masks", "measurements.csv", "overlays"]


def test_a_worker_killed_mid_chunk_loses_and_repeats_nothing(client, images, single, tmp_path):
    marker = tmp_path / "killed"
    cluster.attach_segmenter(client, KillOnceLoader(str(marker)))
    counts = cluster.predict_on_cluster(client, images, tmp_path / "out", BATCH)
    assert marker.exists(), "no worker was killed"
    assert (counts.ok, counts.failed) == (N_IMAGES, 0)
    rows = rows_of(tmp_path / "out")
    assert len({row["mask"] for row in rows}) == len(rows) == N_IMAGES
    assert rows == rows_of(single) and outputs(tmp_path / "out") == outputs(single)


@pytest.mark.integration  # each worker loads a real model: seconds more than the stand-ins
def test_the_command_runs_on_a_scheduler(client, images, tissue_model_dir, tmp_path, capsys):
    client.wait_for_workers(2)  # the nanny restarts a killed worker
    code = cli.main(["predict", *map(str, images[:5]), "--model", str(tissue_model_dir), "--out", str(tmp_path / "out"),
                     "--scheduler", client.scheduler.address])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "5 images on 2 Dask workers; tissue model at 96 px" in captured.err
    assert "5 ok, 0 failed" in captured.out
    assert len(rows_of(tmp_path / "out")) == 5


def test_an_unreachable_scheduler_is_one_line(tissue_model_dir, images, tmp_path, capsys):
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        code = cli.main(["predict", str(images[0]), "--model", str(tissue_model_dir), "--out", str(tmp_path / "out"),
                        "--scheduler", "tcp://127.0.0.1:9"])
    assert code == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("wbcseg predict")]
    assert line.startswith("wbcseg predict: error: tcp://127.0.0.1:9: cannot reach a Dask scheduler there")
