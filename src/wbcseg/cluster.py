"""`wbcseg predict` spread over a Dask cluster (`--workers N` on this machine, `--scheduler ADDRESS`
for a running one, such as a SLURM or PBS cluster started with dask-jobqueue).

The driver splits the files into chunks of whole batches and submits one Dask task per chunk. Each
worker loads the model once (`SegmenterCache`, a worker plugin), runs `batch.segment_files` on its
chunk and writes the masks and overlays; the task's result is the chunk's measurements rows, which
the driver records in measurements.csv (`files.MeasurementsTable`, inside the `OutputFolder` lock).

Exactly once: the scheduler reruns the task of a worker that dies on another worker (up to
`distributed.scheduler.allowed-failures` times); its PNGs are written atomically, with the same
bytes again; and only a finished task's rows reach the driver, which keys them by mask. Workers
need the inputs, the model directory and the output folder at the same paths as the driver (a
shared file system). The driver never imports TensorFlow: the workers do, in their tasks.
"""

from __future__ import annotations

import math
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from distributed import Client, LocalCluster, WorkerPlugin, as_completed, get_worker
from distributed.client import FutureCancelledError
from distributed.scheduler import KilledWorker

from wbcseg.errors import ClusterError
from wbcseg.files import DEFAULT_MAX_MEGAPIXELS, Counts, MeasurementsTable, OutputFolder, output_columns, output_names

PLUGIN = "wbcseg-segmenter"
#: A chunk holds at most this many batches: more would make a killed worker's redo longer, and
#: fewer would spend more of the run on tasks' overhead.
MAX_BATCHES_PER_CHUNK = 4


@dataclass(frozen=True)
class ModelSpec:
    """What a worker loads: `Segmenter.load(model_dir, **options)`. Picklable, and light on the driver."""

    model_dir: str
    options: dict = field(default_factory=dict)

    def __call__(self):
        from wbcseg.segmenter import Segmenter

        return Segmenter.load(self.model_dir, **self.options)


class SegmenterCache(WorkerPlugin):
    """One Segmenter per worker, made by `load` (a picklable callable) for the first task that
    needs it: not in `setup`, which runs in the worker's event loop, where seconds of model
    loading would stall its heartbeats."""

    idempotent = False  # a new run's plugin replaces the previous run's, and its model

    def __init__(self, load: Callable):
        self.load = load

    def setup(self, worker) -> None:
        self._segmenter = None
        self._loading = threading.Lock()

    def segmenter(self):
        with self._loading:
            if self._segmenter is None:
                self._segmenter = self.load()
            return self._segmenter


def _worker_segmenter():
    return get_worker().plugins[PLUGIN].segmenter()


def describe_segmenter() -> dict:
    """The worker's Segmenter in words (a task): its description, notes and pixel size."""
    segmenter = _worker_segmenter()
    return {"describe": segmenter.describe(), "notes": list(segmenter.notes), "pixel_size": segmenter.pixel_size}


def segment_chunk(indices: list[int], files: list[str], names: list[Path], out_dir: str, batch_size: int, max_megapixels: float):
    """One task: segment a chunk of files with the worker's Segmenter, write their PNGs into
    `out_dir`, and return ([(index, row)], [(index, failure message)]) by the files' `indices`
    in the whole run."""
    from wbcseg.batch import segment_files

    rows, failures = [], []
    segment_files(
        _worker_segmenter(), [Path(f) for f in files], names, Path(out_dir),
        record=lambda i, row: rows.append((indices[i], row)), fail=lambda i, message: failures.append((indices[i], message)),
        batch_size=batch_size, max_megapixels=max_megapixels, pad=True,  # a worker meets many chunks: one input shape for all
    )
    return rows, failures


def chunk_size(n_files: int, batch_size: int, workers: int) -> int:
    """Files per task: whole batches, at least two tasks per worker where there are enough files (so
    that a fast worker can take over from a slow one), at most MAX_BATCHES_PER_CHUNK batches."""
    batches = math.ceil(n_files / batch_size)
    return batch_size * max(1, min(MAX_BATCHES_PER_CHUNK, batches // (2 * max(1, workers))))


@contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None) -> Iterator[Client]:
    """A Client of the scheduler at `scheduler`, else of a LocalCluster of `workers` processes
    (one thread each: the model call has its own threads)."""
    if scheduler:
        try:
            client = Client(scheduler)  # waits up to the dask setting distributed.comm.timeouts.connect
        except (OSError, TimeoutError) as exc:
            raise ClusterError(f"{scheduler}: cannot reach a Dask scheduler there ({exc})") from None
        with client:
            yield client
        return
    with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


def attach_segmenter(client: Client, load: Callable) -> dict:
    """Give every worker of `client`'s cluster, present and future, a SegmenterCache of `load`;
    returns one worker's `describe_segmenter()` (its model is loaded by then, so a bad model stops
    the run here)."""
    client.register_plugin(SegmenterCache(load), name=PLUGIN)
    return client.submit(describe_segmenter, pure=False).result()


def predict_on_cluster(
    client: Client,
    files: list[Path],
    out: str | os.PathLike | OutputFolder,
    batch_size: int,
    pixel_size: float | None = None,
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
    counts: Counts | None = None,
) -> Counts:
    """`batch.predict_files` on the workers of `client`, which `attach_segmenter` has prepared:
    the same masks, overlays and measurements.csv rows (`pixel_size` must be the workers'
    Segmenter's, for the table's columns). A chunk whose worker died too often counts as failed,
    one line naming its first file; `counts` is updated as chunks finish."""
    from tqdm import tqdm

    if not isinstance(out, OutputFolder):
        with OutputFolder(out) as folder:
            return predict_on_cluster(client, files, folder, batch_size, pixel_size, max_megapixels, counts)
    counts = counts if counts is not None else Counts()
    names = output_names(files)
    paths = [os.path.abspath(f) for f in files]
    size = chunk_size(len(files), batch_size, len(client.scheduler_info()["workers"]))
    chunks = {
        client.submit(segment_chunk, list(range(start, stop)), paths[start:stop], names[start:stop], os.path.abspath(out.path),
                      batch_size, max_megapixels, pure=False): (start, stop)
        for start, stop in ((start, min(start + size, len(files))) for start in range(0, len(files), size))
    }
    with MeasurementsTable(out.path, output_columns(pixel_size)) as table, tqdm(total=len(files), unit="image", disable=None, file=sys.stderr) as bar:
        try:
            for future in as_completed(chunks):
                start, stop = chunks[future]
                try:
                    rows, failures = future.result()
                except (KilledWorker, FutureCancelledError) as exc:
                    rows, failures = [], [(start, f"{files[start]} and the {stop - start - 1} files after it: not segmented, their Dask task failed ({exc})")]
                    counts.failed += stop - start - 1
                for index, row in rows:
                    table.write({**row, "image": str(files[index])}, order=index)  # the input as the user named it
                for _, message in failures:
                    tqdm.write(f"wbcseg predict: {message}", file=sys.stderr)
                counts.ok += len(rows)
                counts.failed += len(failures)
                bar.update(stop - start)
        finally:
            client.cancel(list(chunks))  # after an error or Ctrl-C, the workers stop too
    return counts
