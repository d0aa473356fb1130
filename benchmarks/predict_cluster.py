"""`wbcseg predict` in one process and on Dask LocalClusters of 1 and 2 workers: images per second
and the driver's peak memory, each run a fresh `wbcseg predict` command into its own folder.

    python benchmarks/predict_cluster.py --images 400 --workers 1 2

The images are the public datasets' (from $WBC_DATA_SOURCE or data/raw), repeated up to --images.
Without --model, an untrained InceptionV3 U-Net at 128 px is saved in a temporary folder: the speed
of a model does not depend on its weights. A run's time is the whole command's (the cluster's
start and every worker's model loading included, after an untimed run that leaves the model's
OpenVINO conversion in the cache), as a user waits for it; the driver's memory is its resident
set, sampled every 50 ms, without its workers'.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from wbcseg.data import DATASETS, SOURCE_ENV, dataset_dir


def source_images(count: int) -> list[Path]:
    root = Path(os.environ.get(SOURCE_ENV) or "data/raw")
    found = sorted(path for d in DATASETS for path in dataset_dir(root, d).glob("*.bmp"))
    if not found:
        sys.exit(f"no dataset images under {root}; set {SOURCE_ENV} or run `dvc repro fetch`")
    return [found[i % len(found)] for i in range(count)]


def stage_inputs(images: list[Path], folder: Path) -> Path:
    """Links to the images under distinct names, so that a repeated image is segmented again."""
    folder.mkdir(parents=True)
    for i, image in enumerate(images):
        (folder / f"{i:05d}{image.suffix}").symlink_to(image.resolve())
    return folder


def untrained_model(folder: Path) -> Path:
    from wbcseg.card import make_card
    from wbcseg.network import build_unet, save_model
    from wbcseg.params import RunConfig

    config = RunConfig(variant="benchmark", task="tissue", datasets=(1, 2), test_datasets=(1, 2), epochs=1, batch_size=16,
                       learning_rate=1e-3, loss="dice_ce", augment=False, seed=0, backbone="inceptionv3", encoder_weights=None,
                       input_size=128)
    return save_model(build_unet("inceptionv3", "tissue", 128), folder, make_card(config))


def timed_run(command: list[str]) -> tuple[float, float]:
    """(seconds, the command's peak resident memory in MiB) of one command, which must succeed."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    watched, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    if process.returncode:
        sys.exit(f"{' '.join(command)} failed ({process.returncode}):\n{process.stderr.read()[-3000:]}")
    return seconds, peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--model", help="a model directory (default: an untrained one at 128 px)")
    parser.add_argument("--engine", default="auto", choices=["auto", "tensorflow", "openvino"])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="wbcseg-cluster-benchmark-") as tmp:
        tmp = Path(tmp)
        model = Path(args.model) if args.model else untrained_model(tmp / "model")
        inputs = stage_inputs(source_images(args.images), tmp / "in")

        def predict(path: Path, out: str, *extra: str) -> list[str]:
            return [sys.executable, "-m", "wbcseg.cli", "predict", str(path), "--model", str(model), "--engine", args.engine,
                    "--out", str(tmp / out), *extra]

        # untimed: OpenVINO converts a model once and caches it, a cost no timed run should pay
        timed_run(predict(next(inputs.iterdir()), "warm-up"))
        runs = [("one process, no Dask", [])] + [(f"LocalCluster, {n} worker{'s' * (n > 1)}", ["--workers", str(n)]) for n in args.workers]
        print(f"{args.images} images, {os.cpu_count()} CPU cores, engine {args.engine}")
        print(f"{'run':<28} {'seconds':>8} {'images/s':>9} {'driver peak MiB':>16}")
        for i, (name, extra) in enumerate(runs):
            seconds, peak = timed_run(predict(inputs, f"out{i}", *extra))
            print(f"{name:<28} {seconds:8.1f} {args.images / seconds:9.1f} {peak:16.0f}", flush=True)


if __name__ == "__main__":
    main()
