"""Keeping Python's cyclic garbage collector off the millions of small objects a history is made of.

A history of a million records is some ten million objects (records, responses, strings) that hold no
reference cycles: reference counting frees them. While they are being built, the collector's generation-2
passes rescan all of them again and again (20 of the 36 s of reading a 1M-record file); once they are
built, each full pass over them stalls whatever runs at that moment.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Build long-lived objects without cyclic collections midway (the collector's state is restored after)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextmanager
def long_lived() -> Iterator[None]:
    """Build objects meant to live as long as the process (a history read whole, a loaded router): no cyclic
    collections while building them, and none over them after (they are frozen; reference counting still
    frees them when dropped). Use it where nothing inside makes cyclic garbage: that would be kept."""
    with collector_paused():
        yield
    gc.freeze()


def settle_heap() -> None:
    """Exempt what is alive now (the model, its history) from the cyclic garbage collector.

    A loaded model leaves about half a million objects behind; one full collection over them took 0.4 s, stalling
    every request in flight. Frozen objects are still freed by reference counting when dropped.
    """
    gc.collect()
    gc.freeze()
