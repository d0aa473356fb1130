"""The errors that wbcseg raises for bad user input: each message names the file or key and the problem.

The command line prints any WbcsegError as one line and exits 2; a traceback means a bug.
"""


class WbcsegError(ValueError):
    """Bad user input (a dataset file, a parameter, a model directory, an output folder)."""


class DataError(WbcsegError):
    """A dataset or image file is missing, altered or unreadable."""


class ParamsError(WbcsegError):
    """A parameter is missing or has a value the pipeline cannot use."""


class ModelError(WbcsegError):
    """A model directory is missing, incomplete or inconsistent."""


class OutputError(WbcsegError):
    """An output location cannot be written, or another run is writing there."""


class ClusterError(WbcsegError):
    """A Dask cluster cannot be reached or used."""
