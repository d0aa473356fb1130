"""What training precision and op determinism cost: seconds per training step of `main`'s U-Net.

    python benchmarks/training_speed.py [--steps 30] [--size 128] [--batch-size 16]

Each setting (float32 or mixed bfloat16, with and without TensorFlow's op determinism) runs in a
process of its own (determinism cannot be switched off once on), on random images at the model's
size, after two warm-up steps. Prints the median seconds per step of each and the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CHILD = "--child"


def child(precision: str, deterministic: bool, steps: int, size: int, batch_size: int) -> None:
    import numpy as np

    from wbcseg.backend import tf
    from wbcseg.network import build_unet, compile_model
    from wbcseg.train import dtype_policy

    tf.keras.utils.set_random_seed(0)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch_size, size, size, 3)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, (batch_size, size, size))]
    with dtype_policy(precision):
        model = build_unet("inceptionv3", "tissue", size)
        compile_model(model, "tissue", "dice_ce", 1e-3)
        times = []
        for step in range(steps + 2):
            start = time.perf_counter()
            model.train_on_batch(x, y)
            if step >= 2:
                times.append(time.perf_counter() - start)
    print(statistics.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    results = {}
    for precision in ("float32", "mixed_bfloat16"):
        for deterministic in (False, True):
            out = subprocess.run(
                [sys.executable, __file__, CHILD, precision, str(deterministic), str(args.steps), str(args.size), str(args.batch_size)],
                capture_output=True, text=True, check=True,
            )
            results[precision, deterministic] = float(out.stdout.split()[-1])
            print(f"{precision:15s} deterministic={deterministic!s:5s}: {results[precision, deterministic]:.3f} s per step "
                  f"of {args.batch_size} images at {args.size} px", flush=True)
    base = results["float32", False]
    print(f"mixed bfloat16 is {base / results['mixed_bfloat16', False]:.2f}x as fast as float32; "
          f"op determinism costs {results['float32', True] / base - 1:+.0%} in float32 and "
          f"{results['mixed_bfloat16', True] / results['mixed_bfloat16', False] - 1:+.0%} in mixed bfloat16")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == CHILD:
        child(sys.argv[2], sys.argv[3] == "True", int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
    else:
        main()
