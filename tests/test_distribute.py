"""Training under tf.distribute.MirroredStrategy matches training on one device.

Two logical CPU devices stand in for two GPUs. They must be configured before TensorFlow
initialises its devices, so the runs happen in a fresh process. The backbone is resnet18, not the
InceptionV3 we ship, to keep the test short: the strategy, the loss scaling and the synchronised
batch normalisation do not depend on the backbone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
TESTS = Path(__file__).resolve().parent

SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from wbcseg.backend import tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    import numpy as np
    from lab_data import synthetic_cell
    from stand_ins import tiny_config
    from wbcseg.preprocess import resize_image, resize_labels
    from wbcseg.train import fit

    rng = np.random.default_rng(0)
    cells = [synthetic_cell(rng, 100) for _ in range(8)]
    arrays = {"images": np.stack([resize_image(i, 96) for i, _ in cells]), "labels": np.stack([resize_labels(l, 96) for _, l in cells])}
    out = {}
    for distribute in ("none", "mirrored"):
        config = tiny_config(batch_size=8, backbone="resnet18", distribute=distribute)
        model, history = fit(config, arrays, arrays, progress=False)
        out[distribute] = {"replicas": model.distribute_strategy.num_replicas_in_sync, **history.iloc[-1].to_dict()}
    print(json.dumps(out))
    """
)


def train_both() -> dict:
    """{'none': ..., 'mirrored': ...}: the replicas and the epoch's metrics of each run."""
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(TESTS)], capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs() -> dict:
    return train_both()


def test_mirrored_runs_on_both_devices(runs):
    assert (runs["none"]["replicas"], runs["mirrored"]["replicas"]) == (1, 2)


def test_one_epoch_mirrored_matches_one_device(runs):
    one, two = runs["none"], runs["mirrored"]
    # One epoch is one step of 8 images, 4 per device, with the same starting weights on both. Its
    # loss is the mean of the devices' losses, as on one device up to the rounding of the
    # all-reduced sums. Its Dice is segmentation_models' Dice of a whole batch, which Keras
    # averages over the devices' halves: not the Dice of the whole batch, so it agrees less closely.
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-3), json.dumps(runs)
    assert two["dice"] == pytest.approx(one["dice"], rel=0.03), json.dumps(runs)
    # The validation metrics come after the Adam step, which moves each weight by about the learning
    # rate in the direction of its gradient, however small: where a gradient is near 0, rounding
    # can flip that direction, so these agree less closely.
    for metric in ("val_loss", "val_dice"):
        assert two[metric] == pytest.approx(one[metric], rel=0.05, abs=0.01), json.dumps(runs)


if __name__ == "__main__":  # `python tests/test_distribute.py` prints the figures of docs/pipeline.md
    print(json.dumps(train_both(), indent=2))
