"""The package's version, and the check that `gmtrouter` is this package rather than a folder of the same name.

A script run from the folder that holds a clone named `gmtrouter` (beside `shared/`, as the README lays it out)
sees that clone first: Python takes the folder, which has no `__init__.py` of its own, for a namespace package,
and an editable install's finder then serves the real modules under it. Everything that records the version
(a checkpoint, a benchmark report) imports it from here, so such a run stops at its first model load with a line
that says what happened instead of "cannot import name '__version__' from 'gmtrouter' (unknown location)".
"""

from __future__ import annotations

import sys

from gmtrouter.utils.errors import GmtError

__version__ = "0.1.0"


class ShadowedPackage(GmtError, ImportError):
    """`gmtrouter` was imported from a folder that is not the package (an import error the command line prints)."""


def check_package() -> None:
    """Refuse to go on when `gmtrouter` is a namespace package: a folder named like it shadows the real one."""
    package = sys.modules.get("gmtrouter")
    if package is not None and getattr(package, "__file__", None) is None:
        folders = ", ".join(str(folder) for folder in getattr(package, "__path__", ()))
        raise ShadowedPackage(
            f"Python took the folder {folders} for the gmtrouter package (a script run from the folder that holds "
            "the clone sees the clone first); run it from inside the clone or any other folder, or rename the clone"
        )


check_package()
