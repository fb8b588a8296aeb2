"""What the jobs share, made once before them: the matrices, LinUCB's query embeddings, the warm start's logs
and the gmtrouter model `gmtrouter train` fits on them. Each is a file under OUT named by what it is made from,
so a rerun reuses it."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gmtrouter.bench.online.scenarios import LOGS_SEED, offline_records
from gmtrouter.bench.online.world import WorldConfig
from gmtrouter.data.matrix import MatrixRow, write_matrix
from gmtrouter.data.schema import write_records
from gmtrouter.utils.atomic import atomic_write
from gmtrouter.utils.errors import GmtError

MATRICES = ("gsm8k", "mmlu", "llmrouter")
UPSTREAM = {"gsm8k": "gsm8k", "mmlu": "mmlu", "llmrouter": "llmrouter"}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


@dataclass(frozen=True)
class Matrix:
    """A prepared matrix file and what the report says about it."""

    name: str
    path: Path
    sha: str
    rows: int
    llms: list[str]
    categories: int


def prepare_matrix(name: str, data_dir: Path, out: Path) -> tuple[Matrix, list[MatrixRow]]:
    """`gmtrouter data prepare NAME` into OUT/data/NAME_matrix.jsonl (rewritten only when it changed)."""
    from gmtrouter.data.loaders import prepare
    from gmtrouter.data.matrix import matrix_llms

    folder = data_dir / UPSTREAM[name]
    if not folder.exists():
        raise GmtError(f"{folder}: not found; point --data-dir at the shared data folder (it holds {folder.name}/)")
    rows: list[MatrixRow] = prepare(name, folder)  # type: ignore[assignment]
    path = out / "data" / f"{name}_matrix.jsonl"
    fresh = path.with_name(f".{path.name}.new")
    write_matrix(fresh, rows)
    if path.is_file() and sha256(path) == sha256(fresh):
        fresh.unlink()
    else:
        os.replace(fresh, path)
    categories = len({str(row.meta.get("category", "")) for row in rows})
    return Matrix(name, path, sha256(path), len(rows), matrix_llms(rows), categories), rows


def query_embeddings(matrix: Matrix, rows: list[MatrixRow], encoder: str, out: Path) -> Path:
    """[R, d] float32 text embeddings of the matrix's queries (the encoder's on-disk cache spares re-encoding)."""
    from gmtrouter.text.encoders import get_encoder

    path = out / "embeddings" / f"{matrix.name}-{_slug(encoder)}-{matrix.sha[:12]}.npy"
    if not path.is_file():
        vectors = get_encoder(encoder).encode([row.query for row in rows])
        with atomic_write(path, "wb") as handle:
            np.save(handle, np.asarray(vectors, dtype=np.float32))
    return path


def warm_data(matrix: Matrix, rows: list[MatrixRow], world: WorldConfig, out: Path) -> tuple[Path, str]:
    """The warm start's side-by-side votes of other users of the world's population, and their file's SHA-256."""
    path = out / "data" / f"{matrix.name}-offline-seed{LOGS_SEED}-{matrix.sha[:12]}.jsonl"
    if not path.is_file():
        write_records(path, offline_records(rows, world))
    return path, sha256(path)


def warm_model(records: Path, records_sha: str, encoder: str | None, out: Path, seed: int = LOGS_SEED) -> Path:
    """`gmtrouter train --data RECORDS --seed SEED` into OUT/models/ (once); a failure names its log."""
    stem = records.stem.replace("-offline", "")
    folder = out / "models" / f"{stem}-{records_sha[:12]}{'-' + _slug(encoder) if encoder else ''}"
    if (folder / "config.json").is_file():
        return folder
    log = folder.with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "gmtrouter", "train", "--data", str(records), "-o", str(folder)]
    command += ["--seed", str(seed)] + (["--set", f"encoder={encoder}"] if encoder else [])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}  # one thread: fastest on shared cores
    with log.open("w", encoding="utf-8") as handle:
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
    if done.returncode != 0:
        raise GmtError(f"training the warm-start model failed (exit {done.returncode}); see {log}")
    return folder
