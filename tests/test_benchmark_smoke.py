"""The service load benchmark runs end to end, small: every phase answers, every feedback written is stored once.

A smoke run, so that `benchmarks/serve_load.py` cannot rot unnoticed; it measures nothing (timings are the
benchmark's business, docs/benchmarks.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.serve_support import child_env, served_model  # noqa: F401 - a fixture

pytestmark = pytest.mark.slow


def test_serve_load_runs_every_phase(served_model: Path, data_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    where = ["--model", str(served_model), "--data-dir", str(data_dir), "--out", str(tmp_path)]
    small = ["--requests", "12", "--concurrency", "3", "--seconds", "60", "--warmup", "5"]
    small += ["--rate", "30", "--new-rate", "15", "--writers", "2", "--events", "4"]
    done = subprocess.run(
        [sys.executable, "benchmarks/serve_load.py", *where, *small],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.split("\n| phase")[0])
    for phase in ("route_new_queries", "route_new_queries_paced", "route_cached_queries", "route_cached_queries_paced"):
        assert results[phase]["requests"] == 12 and results[phase]["errors"] == 0, (phase, results[phase])
    assert results["feedback"]["errors"] == 0
    rows = results["feedback_rows"]
    assert rows["sent"] == rows["stored"] == rows["distinct_keys"] == rows["distinct_records"] == 8, rows
    assert "| /v1/route, new queries (embedded) |" in done.stdout  # the Markdown table for docs/benchmarks.md
