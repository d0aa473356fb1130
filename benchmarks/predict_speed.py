"""How fast is `wbcseg predict`, against the original demo's one-image-at-a-time loop?

Generates a folder of synthetic 300x300 cell images, then in one run measures images/second of
(a) a naive loop that reads an image and calls `model.predict` on it alone, as the original
project's demo does, and writes its mask, and of `wbcseg predict`'s batched tf.data path
(`predict.predict_files`, which writes a mask, an overlay and a CSV row per image) with each
engine (TensorFlow, OpenVINO) in float32 and, where the CPU has it natively, in bfloat16; and the
peak resident memory of each. Every path is warmed up first, so neither graph tracing nor the
one-time OpenVINO conversion is timed (the conversion's time is printed on its own).

`--stream-check N` then runs the fastest batched path over N small images and prints the peak
memory in each quarter of the run: flat figures mean the images are streamed, not loaded all at once.

    python benchmarks/predict_speed.py --images 200
    python benchmarks/predict_speed.py --images 200 --model models/main --stream-check 10000
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

from wbcseg.data import TASK_CLASSES, read_image
from wbcseg.model import NORMALISATION, as_class_probabilities, build_unet, load_model, native_bfloat16, save_model
from wbcseg.predict import DEFAULT_BATCH_SIZE, Segmenter, mask_to_png_values, predict_files
from wbcseg.preprocess import resize_image, resize_probabilities

UNTRAINED_SIZE = 128


def synthetic_cells(folder: Path, n: int, side: int, seed: int = 0) -> list[Path]:
    """n BMP images of a purple 'nucleus' in pink 'cytoplasm' on a pale background, at random places."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side]
    colours = np.array([[235, 215, 170], [210, 150, 190], [90, 40, 140]], np.int16)
    paths = []
    for i in range(n):
        cy, cx = rng.uniform(0.3, 0.7, 2) * side
        r = np.hypot(yy - cy, xx - cx) / side
        labels = np.where(r < 0.12, 2, np.where(r < 0.25, 1, 0))
        image = np.clip(colours[labels] + rng.integers(-10, 11, (side, side, 3)), 0, 255).astype(np.uint8)
        paths.append(folder / f"{i:05d}.bmp")
        Image.fromarray(image).save(paths[-1])
    return paths


def untrained_model(model_dir: Path) -> Path:
    """An untrained tissue U-Net at UNTRAINED_SIZE px, saved with a minimal card: same cost as a trained one."""
    card = {
        "task": "tissue", "classes": list(TASK_CLASSES["tissue"]), "input_size": UNTRAINED_SIZE,
        "backbone": "inceptionv3", "normalisation": NORMALISATION,
    }
    return save_model(build_unet("inceptionv3", "tissue", UNTRAINED_SIZE), model_dir, card)


@contextmanager
def peak_rss(samples: list, interval: float = 0.05):
    """Record (seconds, RSS bytes) of this process every `interval` into `samples` while the block runs."""
    process, stop, start = psutil.Process(), threading.Event(), time.perf_counter()

    def sample():
        while not stop.is_set():
            samples.append((time.perf_counter() - start, process.memory_info().rss))
            stop.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()
        samples.append((time.perf_counter() - start, process.memory_info().rss))


def naive_loop(model, size: int, task: str, files: list[Path], out: Path) -> None:
    """The original demo's way: one image, one `model.predict` call, one mask, and again."""
    out.mkdir(parents=True, exist_ok=True)
    for path in files:
        image = read_image(path)
        probs = as_class_probabilities(model.predict(resize_image(image, size)[None].astype(np.float32), verbose=0))[0]
        labels = resize_probabilities(probs, image.shape).argmax(-1).astype(np.uint8)
        Image.fromarray(mask_to_png_values(labels, task)).save(out / f"{path.stem}.png")


def timed(label: str, n: int, work) -> tuple[float, float]:
    """Run `work()`; print and return (images/second, peak RSS in MiB)."""
    samples: list = []
    with peak_rss(samples):
        start = time.perf_counter()
        work()
        seconds = time.perf_counter() - start
    rate, peak = n / seconds, max(rss for _, rss in samples) / 2**20
    print(f"{label:<40} {n:>6} images in {seconds:7.1f} s = {rate:6.1f} images/s, peak RSS {peak:6.0f} MiB")
    return rate, peak


def stream_check(segmenter: Segmenter, workdir: Path, n: int, batch_size: int) -> None:
    files = synthetic_cells(workdir / "stream", n, side=64, seed=1)
    samples: list = []
    with peak_rss(samples, interval=0.2):
        start = time.perf_counter()
        ok, failed = predict_files(segmenter, files, workdir / "stream_out", batch_size=batch_size)
        seconds = time.perf_counter() - start
    end = samples[-1][0]
    quarters = [max(rss for t, rss in samples if q * end / 4 <= t <= (q + 1) * end / 4) / 2**20 for q in range(4)]
    print(f"stream check: {ok} ok, {failed} failed, 64x64 images, {ok / seconds:.1f} images/s")
    print("peak RSS per quarter of the run (MiB): " + ", ".join(f"{q:.0f}" for q in quarters))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200, help="number of 300x300 images (default 200)")
    parser.add_argument("--model", type=Path, help=f"a model directory (default: an untrained {UNTRAINED_SIZE}-px tissue model)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help=f"default {DEFAULT_BATCH_SIZE}, as wbcseg predict")
    parser.add_argument("--stream-check", type=int, default=0, metavar="N", help="also stream N small images through the batched path")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="wbcseg-bench-") as tmp:
        workdir = Path(tmp)
        files = synthetic_cells(workdir / "images", args.images, side=300)
        model_dir = args.model or untrained_model(workdir / "model")
        model, card = load_model(model_dir)
        size, task = card["input_size"], card["task"]
        print(f"{args.images} images of 300x300, model {task} at {size} px, batch size {args.batch_size}, "
              f"{psutil.cpu_count()} CPUs, native bfloat16: {native_bfloat16()}, "
              f"RSS after loading {psutil.Process().memory_info().rss / 2**20:.0f} MiB")
        # The naive loop runs before OpenVINO is loaded: in one measurement, OpenVINO's idle threads slowed it by ~13 %.
        naive_loop(model, size, task, files[:2], workdir / "warm_naive")
        naive, _ = timed("(a) naive loop, model.predict x1", len(files), lambda: naive_loop(model, size, task, files, workdir / "naive"))

        precisions = ["float32"] + (["bfloat16"] if native_bfloat16() else [])
        segmenters = {("tensorflow", precision): Segmenter(model, card, precision=precision) for precision in precisions}
        start = time.perf_counter()
        # In memory, not through wbcseg predict's cache: an untrained model would leave ~100 MB there per run.
        segmenters.update({("openvino", precision): Segmenter(model, card, precision=precision, engine="openvino") for precision in precisions})
        print(f"OpenVINO conversion and compilation: {time.perf_counter() - start:.1f} s (once per model: wbcseg predict caches it)")
        warm = files[: 2 * args.batch_size]  # traces the graphs of every path before timing
        for (engine, precision), segmenter in segmenters.items():
            predict_files(segmenter, warm, workdir / f"warm_{engine}_{precision}", batch_size=args.batch_size)

        batch = np.stack([resize_image(read_image(path), size) for path in warm[: args.batch_size]])
        for label, ((engine, precision), segmenter) in zip("bcde", segmenters.items()):
            start = time.perf_counter()
            for _ in range(3):
                segmenter.predict_probabilities(batch)
            print(f"({label}) model call alone, {engine} {precision}: {(time.perf_counter() - start) / (3 * len(batch)) * 1000:.1f} ms per image")
            rate, _ = timed(
                f"({label}) wbcseg predict, {engine} {precision}", len(files),
                lambda: predict_files(segmenter, files, workdir / f"{engine}_{precision}", batch_size=args.batch_size),
            )
            print(f"speedup ({label})/(a): {rate / naive:.1f}x")
        if args.stream_check:
            stream_check(segmenters["openvino", precisions[-1]], workdir, args.stream_check, args.batch_size)


if __name__ == "__main__":
    main()
