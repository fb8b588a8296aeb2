"""`gmtrouter train` on a cold embedding cache, with the PyTorch encoder and with the ONNX int8 one.

    OMP_NUM_THREADS=1 python -m benchmarks.train_cold

Trains GMTRouter with default settings on the training part of MT-Bench's record split of seed 0, each run a
child process with an empty embedding cache (GMTROUTER_CACHE_DIR), so every query, answer and LLM description is
embedded in the run: GMTROUTER_ENCODER_BACKEND=torch; then the default, ONNX, whose first run also exports the
model; ONNX again with only the export kept; and ONNX with everything cached. Prints the wall times and writes
benchmarks/out/train_cold.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import DEFAULT_DATA, OUT, mt_bench, save_json
from gmtrouter.data.schema import write_records
from gmtrouter.data.split import split_records


def train_once(data: Path, cache: Path, backend: str | None) -> float:
    env = {**os.environ, "GMTROUTER_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1"}
    env.pop("GMTROUTER_ENCODER_BACKEND", None)
    if backend:
        env["GMTROUTER_ENCODER_BACKEND"] = backend
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "gmtrouter", "train", "--data", str(data), "-o", f"{out}/model"]
        started = time.perf_counter()
        subprocess.run([*command, "--set", "progress=false"], env=env, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    train, _ = split_records(mt_bench(args.data_dir), "record", 0.2, 0)
    data = OUT / "mt_bench_split0_train.jsonl"
    write_records(data, train)
    results = {"records": len(train), "load_average_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as root:
        results["pytorch, cold cache"] = train_once(data, Path(root) / "torch", "torch")
        results["onnx, cold cache and no export"] = train_once(data, Path(root) / "onnx", None)
        shutil.rmtree(Path(root) / "onnx" / "embeddings")
        results["onnx, cold cache, export kept"] = train_once(data, Path(root) / "onnx", None)
        results["onnx, warm cache"] = train_once(data, Path(root) / "onnx", None)
    results["load_average_after"] = os.getloadavg()
    for name, value in results.items():
        print(f"{name}: {value:.1f} s" if isinstance(value, float) else f"{name}: {value}")
    save_json("train_cold", results)


if __name__ == "__main__":
    main()
