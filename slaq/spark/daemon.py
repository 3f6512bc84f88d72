"""The PySpark worker daemon (``spark.python.daemon.module``): imports once, then forks.

Every Python worker is forked from this daemon, so what it imports and freezes here each
worker inherits instead of paying for again (docs/design.md §7).
"""

from __future__ import annotations

import gc
import os

# BLAS thread-pool sizes for every Python worker (the executors' environment sets them too).
SINGLE_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def daemon_main() -> None:
    """PySpark daemon (``spark.python.daemon.module``) that imports the numeric stack once.

    Every Python worker is forked from the daemon, so importing numpy, scipy and the trainers
    here saves each worker a few CPU seconds of imports at start-up.
    """
    for name in SINGLE_THREAD_ENV:
        # BLAS thread pools must not exist before the daemon forks (and a task is one slot).
        os.environ.setdefault(name, "1")
    import pyspark.worker  # noqa: F401
    from pyspark.daemon import manager

    import slaq.algorithms  # noqa: F401
    import slaq.spark.context  # noqa: F401
    import slaq.spark.params  # noqa: F401

    # PySpark's daemon runs gc.collect() in a reused worker after every task; over the objects
    # these imports create that took 44 ms of CPU per task (docs/design.md §7). Frozen objects are
    # skipped by later collections in the daemon and in every worker it forks.
    gc.freeze()
    manager()


if __name__ == "__main__":
    daemon_main()
