"""A script run from the folder that holds the clone (named `gmtrouter`, as the README lays it out) is told why
its import fails, instead of "cannot import name '__version__' from 'gmtrouter' (unknown location)"."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

SCRIPT = "from gmtrouter.api import Router\nprint('imported', Router.__name__)\n"


def test_a_script_beside_a_clone_named_gmtrouter_is_told_where_to_run(tmp_path: Path) -> None:
    (tmp_path / "gmtrouter").symlink_to(REPO, target_is_directory=True)
    (tmp_path / "script.py").write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run(
        [sys.executable, "script.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert "unknown location" not in run.stderr
    # an editable install (`make install`) serves the package through a finder that Python asks after it has looked
    # in the current folder; a plain install or PYTHONPATH puts the package on the path, where it wins
    if any(module.startswith("__editable___gmtrouter") for module in sys.modules):
        assert run.returncode != 0
        last = run.stderr.strip().splitlines()[-1]
        assert f"Python took the folder {tmp_path / 'gmtrouter'} for the gmtrouter package" in last
        assert "run it from inside the clone" in last
    else:  # the package is found on sys.path before the folder counts: nothing to explain
        assert run.returncode == 0 and "imported Router" in run.stdout, run.stderr
