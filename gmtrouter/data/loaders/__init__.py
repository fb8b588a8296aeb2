"""Dataset loaders behind `gmtrouter data prepare`: each turns an upstream format into records or a matrix.

Record datasets (real users' feedback) give canonical interactions; matrix datasets (benchmarks with per-LLM
correctness) give a query x LLM matrix for the simulator. Each loader reads local files; a dataset that lives
on the Hugging Face Hub can also be named as `hf:OWNER/NAME` where its loader supports downloading. `langfuse`
also takes the score names that rate answers, and can read a Langfuse server instead of an export.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from gmtrouter.data.matrix import MatrixRow
from gmtrouter.data.schema import Interaction
from gmtrouter.utils.errors import GmtError

RecordLoader = Callable[[Path], list[Interaction]]
MatrixLoader = Callable[[Path], list[MatrixRow]]
HubLoader = Callable[[str], list[Interaction]]
HUB_PREFIX = "hf:"


def _record_loaders() -> dict[str, RecordLoader]:
    from gmtrouter.data.loaders import chatbot_arena, langfuse, mt_bench, openai_logs

    return {
        "mt-bench": mt_bench.load,
        "chatbot-arena": chatbot_arena.load,
        "openai-logs": openai_logs.load,
        "langfuse": langfuse.load,
    }


def _matrix_loaders() -> dict[str, MatrixLoader]:
    from gmtrouter.data.loaders import gsm8k, llmrouter, mmlu

    return {"gsm8k": gsm8k.load, "mmlu": mmlu.load, "llmrouter": llmrouter.load}


def _hub_loaders() -> dict[str, HubLoader]:
    from gmtrouter.data.loaders import chatbot_arena

    return {"chatbot-arena": chatbot_arena.load_hub}


def dataset_names() -> tuple[list[str], list[str]]:
    """(record datasets, matrix datasets) that `data prepare` knows."""
    return sorted(_record_loaders()), sorted(_matrix_loaders())


def prepare(
    dataset: str, data_dir: str | Path | None, score_names: Sequence[str] = (), from_langfuse: str | None = None
) -> list[Interaction] | list[MatrixRow]:
    """Load `dataset` from `data_dir` (or `hf:OWNER/NAME`): records for feedback, rows for a benchmark.
    `score_names` and `from_langfuse` (a Langfuse server's URL, read instead of `data_dir`) are langfuse's."""
    records, matrices = _record_loaders(), _matrix_loaders()
    if dataset not in records and dataset not in matrices:
        known = ", ".join(sorted(records) + sorted(matrices))
        raise GmtError(f"unknown dataset '{dataset}'; choose one of: {known}")
    if dataset == "langfuse":
        return _langfuse(data_dir, score_names, from_langfuse)
    if score_names or from_langfuse:
        raise GmtError("--score-name and --from-langfuse are options of 'data prepare langfuse' only")
    if data_dir is None:
        raise GmtError(f"give --data-dir: the folder (or file) of the {dataset} data")
    source = str(data_dir)
    if source.startswith(HUB_PREFIX):
        hub = _hub_loaders().get(dataset)
        if hub is None:
            raise GmtError(f"{source}: '{dataset}' is read from local files only; download them and pass their folder")
        return hub(source.removeprefix(HUB_PREFIX))
    folder = Path(data_dir)
    if not folder.exists():
        raise GmtError(f"{folder}: no such data directory; point --data-dir at the dataset's files")
    loader = records.get(dataset) or matrices[dataset]
    return loader(folder)


def _langfuse(data_dir: str | Path | None, score_names: Sequence[str], url: str | None) -> list[Interaction]:
    from gmtrouter.data.loaders import langfuse

    if (data_dir is None) == (url is None):
        raise GmtError("give either --data-dir (a Langfuse export) or --from-langfuse URL (a Langfuse server)")
    if url is not None:
        return langfuse.fetch(url, score_names)
    folder = Path(data_dir)  # type: ignore[arg-type]
    if not folder.exists():
        raise GmtError(f"{folder}: no such data directory; point --data-dir at the Langfuse export")
    return langfuse.load(folder, score_names)
