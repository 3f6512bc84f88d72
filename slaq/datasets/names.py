"""Dataset names a config uses, and the early check that every one is registered."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from slaq.datasets.registry import DatasetError, Registry, default_registry

# The simulator's pseudo-dataset: curves generated from a model, no data behind them.
SYNTHETIC = "synthetic"


def check_dataset_names(
    names: Iterable[str], *, registry: Registry | None = None, allow_synthetic: bool = False
) -> None:
    """Raise one-line DatasetError naming every unknown dataset and listing the known ones.

    Cheap (the registry only, no data is touched): meant for ``slaq run`` before a cluster
    starts and for the pipeline at parse time. ``NAME-tiny`` and aliases are known names;
    ``synthetic`` is accepted only with ``allow_synthetic`` (the simulator's curves).
    """
    registry = registry or default_registry()
    unknown: list[str] = []
    for name in names:
        if not isinstance(name, str) or not name.strip():
            unknown.append(f"{name!r} (not a name)")
        elif not (allow_synthetic and name == SYNTHETIC) and registry.find(name) is None:
            close = registry.suggest(name)
            unknown.append(f"{name!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
    if unknown:
        extra = f" and {SYNTHETIC!r}" if allow_synthetic else ""
        noun = "dataset" if len(unknown) == 1 else "datasets"
        raise DatasetError(f"unknown {noun} {', '.join(unknown)}; {registry.known_names()}{extra}")


def datasets_for_config(config: Mapping) -> list[str]:
    """Dataset names a pipeline config uses: its ``datasets`` list and every template's dataset.

    Templates are looked for under ``workload``, ``live.workload`` and ``simulation``; the
    ``synthetic`` pseudo-dataset is skipped. Order of first appearance, no duplicates.
    """
    names: list[str] = []

    def add(value: Any) -> None:
        if isinstance(value, str) and value and value != SYNTHETIC and value not in names:
            names.append(value)

    listed = config.get("datasets", [])
    for value in [listed] if isinstance(listed, str) else (listed or []):
        add(value)

    def templates(section: Any) -> list:
        if not isinstance(section, Mapping):
            return []
        found = list(section.get("templates") or [])
        return found + templates(section.get("workload"))

    for key in ("workload", "live", "simulation"):
        for template in templates(config.get(key)):
            if isinstance(template, Mapping):
                add(template.get("dataset"))
    return names
