"""A live job's parameters as a file its tasks read, so one Spark RDD serves every iteration.

Pickling the trainer's parameters into each task's closure made every ``map_reduce`` build a
new Python RDD: the closure pickled again, a dozen Py4J calls to wrap it, and a new command
shipped to every task. With the parameters in a file next to the run's other scratch data the
RDD of a (function, task count) pair is built once and an iteration is one ``collect()``
(docs/design.md §7). A job's Spark jobs run one after another on its own thread, and a Spark
job returns only after all of its tasks ended, so every task reads the parameters written for
its own job. The file must be where the executors can read it, like the data blocks.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ParamsFile:
    """Where one job's current parameters live; pickled into its tasks instead of them."""

    path: str

    def write(self, params: Any) -> None:
        """Replace the parameters atomically (a task never sees a half-written file)."""
        from pyspark import cloudpickle  # lambdas and local classes pickle as in a closure

        target = Path(self.path)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(cloudpickle.dumps(params, protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(tmp, target)

    def load(self) -> Any:
        """The parameters last written (called in the task)."""
        with open(self.path, "rb") as f:
            return pickle.load(f)
