"""One signal path for a run: SIGINT and SIGTERM become :class:`Terminated` in the main thread.

The first signal raises (so ``finally`` blocks tear the run down in order) and arms a watchdog
that kills the process's children and exits if teardown hangs; later signals are logged and
ignored, so a second Ctrl-C cannot interrupt the teardown the first one started.

PySpark replaces the SIGINT handler when a SparkContext starts (``SparkContext.__init__``
installs one that cancels jobs and raises a bare ``KeyboardInterrupt``): wrap the context's
creation in :func:`keep_signal_handlers` so the run's handler stays in charge. The handler lives
only in the process's signal table, installed and restored by these context managers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psutil

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)
TEARDOWN_GRACE_S = 45.0


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGINT arrived; raised in the main thread so ``finally`` blocks clean up."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum


class _RaiseOnce:
    """The installed handler: raise :class:`Terminated` on the first signal, log the rest."""

    def __init__(self, grace_s: float, exit_on_hang: Callable[[int, float], None]) -> None:
        self.grace_s = grace_s
        self.exit_on_hang = exit_on_hang
        self.fired: int | None = None
        self._lock = threading.Lock()

    def __call__(self, signum: int, frame: Any) -> None:
        with self._lock:
            first = self.fired is None
            if first:
                self.fired = signum
        name = signal.Signals(signum).name
        if not first:
            log.warning("%s received again; still shutting down", name)
            return
        log.warning("%s received: stopping the run and tearing down Spark", name)
        # The exception can land where it is swallowed or where teardown blocks (inside a
        # py4j call, say); the watchdog guarantees the process and its JVMs still go.
        threading.Thread(
            target=self.exit_on_hang,
            args=(signum, self.grace_s),
            daemon=True,
            name="teardown-watchdog",
        ).start()
        raise Terminated(signum)


@contextlib.contextmanager
def signals_as_exceptions(
    signums: Sequence[int] = SIGNALS, grace_s: float = TEARDOWN_GRACE_S
) -> Iterator[None]:
    """Turn SIGINT/SIGTERM into :class:`Terminated` in the main thread; restore handlers after.

    Nested uses share the outermost handler, so "first signal" means first for the whole run.
    Outside the main thread this does nothing (Python only delivers signals there).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if all(isinstance(signal.getsignal(s), _RaiseOnce) for s in signums):
        yield  # an enclosing block already handles these signals
        return
    handler = _RaiseOnce(grace_s, teardown_watchdog)
    old = {s: signal.signal(s, handler) for s in signums}
    try:
        yield
    finally:
        for signum, previous in old.items():
            signal.signal(signum, previous)


@contextlib.contextmanager
def keep_signal_handlers(signums: Sequence[int] = SIGNALS) -> Iterator[None]:
    """Put back, on leaving the block, any handler a library replaced inside it (PySpark's)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.getsignal(s) for s in signums}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            if handler is not None and signal.getsignal(signum) is not handler:
                signal.signal(signum, handler)


def teardown_watchdog(signum: int, grace_s: float = TEARDOWN_GRACE_S) -> None:
    """If orderly teardown has not ended the process after ``grace_s``, kill its children."""
    time.sleep(grace_s)  # a deadline, not synchronization: the process normally exits first
    log.error(
        "teardown did not finish %.0f s after %s; killing child processes",
        grace_s,
        signal.Signals(signum).name,
    )
    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    psutil.wait_procs(children, timeout=10)
    os._exit(128 + signum)


# The name the watchdog test and older callers use.
_teardown_watchdog = teardown_watchdog
