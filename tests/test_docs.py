"""The documents a user reads first are whole: no half-resolved merge left in them."""

from __future__ import annotations

import re
import subprocess

from tests.conftest import REPO

CONFLICT = re.compile(r"^(<{7} |={7}$|>{7} )", re.MULTILINE)


def test_no_tracked_text_file_keeps_merge_conflict_markers() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    texts = [p for p in tracked if p.endswith((".md", ".py", ".toml", ".yaml", ".yml", ".cfg", ".txt"))]
    assert texts, "git ls-files found no text files"
    marked = [p for p in texts if CONFLICT.search((REPO / p).read_text(encoding="utf-8", errors="replace"))]
    assert not marked, f"merge conflict markers in {marked}"
