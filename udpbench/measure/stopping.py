"""A caller's ``threading.Event`` bridged to the flag the compiled send loop watches.

The send loop runs with the GIL released and cannot wait on an Event; it reads a
``_fast.StopFlag`` between batches. A small watcher thread sets that flag when the Event is set.
"""
from __future__ import annotations

import contextlib
import threading

from udpbench.engine import _fast

WATCH_S = 0.02  # how soon after stop.set() the send loop hears of it (plus one batch)


@contextlib.contextmanager
def stop_flag(stop: threading.Event | None):
    """Yield a StopFlag set soon after ``stop`` is, or None without ``stop``."""
    if stop is None:
        yield None
        return
    flag = _fast.StopFlag()
    done = threading.Event()

    def watch():
        while not done.is_set():
            if stop.wait(WATCH_S):
                flag.set()
                return

    watcher = threading.Thread(target=watch, name="udpbench-stop", daemon=True)
    watcher.start()
    try:
        yield flag
    finally:
        done.set()
        watcher.join()
