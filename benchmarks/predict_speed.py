"""How fast is `wbcseg predict`, against the original demo's one-image-at-a-time loop?

Generates a folder of synthetic 300x300 cell images and measures the images per second of
(a) a naive loop that reads an image, calls `model.predict` on it alone (as the original project's
demo does) and writes its mask, and of `wbcseg predict`'s batched tf.data path
(`predict.predict_files`, which writes a mask, an overlay and a CSV row per image) with each
engine (TensorFlow, OpenVINO) in float32 and, where the CPU has it natively, in bfloat16.

Each path runs in a process of its own, warmed up before any timing (neither graph tracing nor
the one-time OpenVINO conversion is timed; the conversion's time is printed), so no path's
threads or memory weigh on another's figures, and its peak memory is its own. The batched paths
then take turns, `--rounds` times, with the naive loop before the first round and after each.
Where the machine's speed drifts (a shared virtual machine's does, by ±20 % within minutes), a
steady drift changes a round as much as the mean of the naive runs just before and after it, so
each speedup is the ratio to that mean; the summary gives the median and range over the rounds.

`--stream-check N` then runs the last path over N small images and prints the peak memory in each
quarter of the run: flat figures mean the images are streamed, not loaded all at once.

    python benchmarks/predict_speed.py --images 200
    python benchmarks/predict_speed.py --images 200 --model models/main --stream-check 10000
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

UNTRAINED_SIZE = 128
NAIVE = "(a) naive loop, model.predict x1"


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
    from wbcseg.card import NORMALISATION
    from wbcseg.classes import TASK_CLASSES
    from wbcseg.network import build_unet, save_model

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
    from wbcseg.classes import mask_to_png_values
    from wbcseg.data import read_image
    from wbcseg.preprocess import resize_image, resize_probabilities
    from wbcseg.segmenter import as_class_probabilities

    out.mkdir(parents=True, exist_ok=True)
    for path in files:
        image = read_image(path)
        probs = as_class_probabilities(model.predict(resize_image(image, size)[None].astype(np.float32), verbose=0))[0]
        labels = resize_probabilities(probs, image.shape).argmax(-1).astype(np.uint8)
        Image.fromarray(mask_to_png_values(labels, task)).save(out / f"{path.stem}.png")


def stream_check(segmenter, workdir: Path, n: int, batch_size: int) -> dict:
    """Stream n 64x64 images through `predict_files`; images/s and the peak RSS (MiB) of each quarter of the run."""
    from wbcseg.batch import predict_files

    files = synthetic_cells(workdir / "stream", n, side=64, seed=1)
    samples: list = []
    with peak_rss(samples, interval=0.2):
        start = time.perf_counter()
        ok, failed = predict_files(segmenter, files, workdir / "stream_out", batch_size=batch_size)
        seconds = time.perf_counter() - start
    end = samples[-1][0]
    # A quarter shorter than the sampling interval (a very short run) has no sample: nan.
    quarters = [max((rss for t, rss in samples if q * end / 4 <= t <= (q + 1) * end / 4), default=np.nan) / 2**20 for q in range(4)]
    return {"ok": ok, "failed": failed, "rate": ok / seconds, "quarters": quarters}


def worker(conn, engine: str | None, precision: str | None, model_dir: Path, files: list[Path], workdir: Path, batch_size: int) -> None:
    """One path in its own process. It sets up and warms up, and reports its RSS after loading the
    model and the time a Segmenter took to set up (for OpenVINO: conversion and compilation).
    Then, on each "run" message, it times the model call alone on one batch (a batched path) and
    the path over all `files`, and replies (seconds, peak RSS in MiB, model call ms per image or
    None); on ("stream", n), it replies `stream_check`; it ends on None."""
    from wbcseg.batch import predict_files
    from wbcseg.data import read_image
    from wbcseg.network import load_model
    from wbcseg.preprocess import resize_image
    from wbcseg.segmenter import Segmenter

    model, card = load_model(model_dir)
    size, task = card["input_size"], card["task"]
    out = workdir / f"out_{engine}_{precision}"
    info = {"rss": psutil.Process().memory_info().rss / 2**20}
    if engine is None:
        naive_loop(model, size, task, files[:2], out)
        run = lambda: naive_loop(model, size, task, files, out)  # noqa: E731
    else:
        start = time.perf_counter()
        # In memory, not through wbcseg predict's cache: an untrained model would leave ~100 MB there per run.
        segmenter = Segmenter(model, card, precision=precision, engine=engine)
        info["setup"] = time.perf_counter() - start
        warm = files[: 2 * batch_size]  # traces or compiles the model for the batch shape
        predict_files(segmenter, warm, out, batch_size=batch_size)
        batch = np.stack([resize_image(read_image(path), size) for path in warm[:batch_size]])
        run = lambda: predict_files(segmenter, files, out, batch_size=batch_size)  # noqa: E731
    conn.send(info)
    for message in iter(conn.recv, None):
        if message == "run":
            call = None
            if engine is not None:
                start = time.perf_counter()
                for _ in range(3):
                    segmenter.predict_probabilities(batch)
                call = (time.perf_counter() - start) / (3 * len(batch)) * 1000
            samples: list = []
            with peak_rss(samples):
                start = time.perf_counter()
                run()
                seconds = time.perf_counter() - start
            conn.send((seconds, max(rss for _, rss in samples) / 2**20, call))
        else:
            conn.send(stream_check(segmenter, workdir, message[1], batch_size))


def _in_process(context, target, *args):
    """Run `target(*args)` in a new process and wait for it, so that this process builds no model:
    on a GPU, TensorFlow would claim the GPU's memory for it."""
    process = context.Process(target=target, args=args)
    process.start()
    process.join()
    if process.exitcode:
        raise SystemExit(f"{target.__name__} failed (exit code {process.exitcode})")


def main(argv=None) -> None:
    from wbcseg.engine import native_bfloat16
    from wbcseg.segmenter import DEFAULT_BATCH_SIZE

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200, help="number of 300x300 images (default 200)")
    parser.add_argument("--rounds", type=int, default=5, help="times each path is timed, in turns (default 5)")
    parser.add_argument("--model", type=Path, help=f"a model directory (default: an untrained {UNTRAINED_SIZE}-px tissue model)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help=f"default {DEFAULT_BATCH_SIZE}, as wbcseg predict")
    parser.add_argument("--stream-check", type=int, default=0, metavar="N", help="also stream N small images through the last path")
    args = parser.parse_args(argv)
    if min(args.images, args.rounds, args.batch_size) < 1:
        parser.error("--images, --rounds and --batch-size must be at least 1")

    context = multiprocessing.get_context("spawn")  # no fork of a process that has loaded TensorFlow
    precisions = ["float32"] + (["bfloat16"] if native_bfloat16() else [])
    paths = {NAIVE: (None, None)}
    for label, (engine, precision) in zip("bcde", [(e, p) for e in ("tensorflow", "openvino") for p in precisions]):
        paths[f"({label}) wbcseg predict, {engine} {precision}"] = (engine, precision)

    with tempfile.TemporaryDirectory(prefix="wbcseg-bench-") as tmp:
        workdir = Path(tmp)
        files = synthetic_cells(workdir / "images", args.images, side=300)
        model_dir = args.model
        if model_dir is None:
            model_dir = workdir / "model"
            _in_process(context, untrained_model, model_dir)
        workers = {}
        for name, (engine, precision) in paths.items():
            conn, child = context.Pipe()
            process = context.Process(target=worker, args=(child, engine, precision, model_dir, files, workdir, args.batch_size))
            process.start()
            child.close()  # so that a worker's death ends conn.recv() with EOFError, not a wait for ever
            workers[name] = (conn, process)
        try:
            infos = {name: conn.recv() for name, (conn, _) in workers.items()}
            print(f"{args.images} images of 300x300, model from {args.model or 'an untrained model'}, batch size {args.batch_size}, "
                  f"{psutil.cpu_count()} CPUs, native bfloat16: {native_bfloat16()}, {args.rounds} rounds; "
                  f"each path in its own process (RSS after loading the model: {infos[NAIVE]['rss']:.0f} MiB)")
            for name, info in infos.items():
                if "openvino" in name:
                    print(f"{name}: OpenVINO conversion and compilation {info['setup']:.1f} s (wbcseg predict caches the conversion)")
            results = {name: [] for name in workers}

            def run(name: str) -> float:
                conn = workers[name][0]
                conn.send("run")
                results[name].append(conn.recv())
                return results[name][-1][0]

            run(NAIVE)
            for round_ in range(1, args.rounds + 1):
                seconds = {name: run(name) for name in workers if name != NAIVE}
                naive = np.mean([run(NAIVE), results[NAIVE][-2][0]])
                print(f"round {round_}: (a) {args.images / naive:.1f} images/s (mean of the runs before and after); " + "; ".join(
                    f"{name[:3]} {args.images / s:.1f} = {naive / s:.1f}x (model call alone {results[name][-1][2]:.1f} ms/image)"
                    for name, s in seconds.items()
                ))
            print(f"{'path':<40} {'images/s':>9}  {'speedup over (a)':<23} {'model call alone':>16} {'peak RSS':>12}")
            naive = np.array([seconds for seconds, _, _ in results[NAIVE]])
            naive = (naive[:-1] + naive[1:]) / 2  # each round's: the mean of the naive runs before and after it
            for name, runs in results.items():
                seconds, peaks, calls = (np.array(column) for column in zip(*runs))
                speedup = call = ""
                if name != NAIVE:
                    ratios = naive / seconds
                    speedup, call = f"{np.median(ratios):4.1f}x ({ratios.min():.1f}x to {ratios.max():.1f}x)", f"{np.median(calls):8.1f} ms/image"
                print(f"{name:<40} {np.median(args.images / seconds):9.1f}  {speedup:<23} {call:>16} {peaks.max():8.0f} MiB")
            print("(medians over the rounds; a speedup is the ratio to the mean of the naive runs just before and after the "
                  "round; the model call alone is one batch of model-size images, without reading or writing)")
            if args.stream_check:
                name, (conn, _) = list(workers.items())[-1]
                conn.send(("stream", args.stream_check))
                check = conn.recv()
                print(f"stream check, {name}: {check['ok']} ok, {check['failed']} failed, 64x64 images, {check['rate']:.1f} images/s")
                print("peak RSS per quarter of the run (MiB): " + ", ".join(f"{q:.0f}" for q in check["quarters"]))
        finally:
            for conn, process in workers.values():
                if process.is_alive():
                    conn.send(None)
                process.join()


if __name__ == "__main__":
    main()
