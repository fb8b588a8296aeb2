"""Running the command line for a test: in a child process (what a user's shell does), or in this process
through the same entry point (`gmtrouter.cli.app.main`, its one-line errors and exit codes included).

A child process pays for importing torch and PyTorch Geometric again (about 5 s); the in-process run does not,
so tests that call the command line many times to check what it says use it, and a few tests keep the child
process for what only it shows (the umask of written files, what an import prints, the console script)."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def in_child(*args: str, umask: int | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m gmtrouter ARGS` in a child process, offline, without the debug switch."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    env.pop("GMTROUTER_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "gmtrouter", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
    )


def in_process(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """`gmtrouter ARGS` through the console script's entry point in this process: the exit status it would
    give (0 when it returns), and what it writes to stdout and stderr."""
    from gmtrouter.cli.app import main

    stdout, stderr = io.StringIO(), io.StringIO()
    saved_argv, debug = sys.argv, os.environ.pop("GMTROUTER_DEBUG", None)
    code: int | str | None = 0
    sys.argv = ["gmtrouter", *args]
    try:
        with contextlib.chdir(cwd), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            main()
    except SystemExit as done:
        code = done.code
    finally:
        sys.argv = saved_argv
        if debug is not None:
            os.environ["GMTROUTER_DEBUG"] = debug
    status = code if isinstance(code, int) else (0 if code is None else 1)
    return subprocess.CompletedProcess(["gmtrouter", *args], status, stdout.getvalue(), stderr.getvalue())


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """The line a bad input gets: exit status 2, one line starting "error: " with each of `words`, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]
