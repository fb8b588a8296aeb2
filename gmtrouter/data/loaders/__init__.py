"""Dataset loaders behind `gmtrouter data prepare`: each turns an upstream format into records or a matrix.

Record datasets (real users' feedback) give canonical interactions; matrix datasets (benchmarks with per-LLM
correctness) give a query x LLM matrix for the simulator. Each loader reads local files only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gmtrouter.data.matrix import MatrixRow
from gmtrouter.data.schema import Interaction
from gmtrouter.errors import GmtError

RecordLoader = Callable[[Path], list[Interaction]]
MatrixLoader = Callable[[Path], list[MatrixRow]]


def _record_loaders() -> dict[str, RecordLoader]:
    from gmtrouter.data.loaders import mt_bench

    return {"mt-bench": mt_bench.load}


def _matrix_loaders() -> dict[str, MatrixLoader]:
    return {}


def dataset_names() -> tuple[list[str], list[str]]:
    """(record datasets, matrix datasets) that `data prepare` knows."""
    return sorted(_record_loaders()), sorted(_matrix_loaders())


def prepare(dataset: str, data_dir: str | Path) -> list[Interaction] | list[MatrixRow]:
    """Load `dataset` from `data_dir`: records for a feedback dataset, matrix rows for a benchmark."""
    records, matrices = _record_loaders(), _matrix_loaders()
    if dataset not in records and dataset not in matrices:
        known = ", ".join(sorted(records) + sorted(matrices))
        raise GmtError(f"unknown dataset '{dataset}'; choose one of: {known}")
    folder = Path(data_dir)
    if not folder.exists():
        raise GmtError(f"{folder}: no such data directory; point --data-dir at the dataset's files")
    loader = records.get(dataset) or matrices[dataset]
    return loader(folder)
