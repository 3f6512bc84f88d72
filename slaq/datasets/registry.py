"""The dataset registry (``slaq/datasets/registry.yaml``, package data): validation and lookup."""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from slaq.datasets.schema import REGISTRY_SCHEMA, SOURCE_KINDS

# Package data (pyproject's package-data), read through importlib.resources so that an
# installed wheel works without the source tree (docs/design.md §5).
REGISTRY_RESOURCE = "registry.yaml"
TINY_SUFFIX = "-tiny"
# Roles each format needs among its files.
FORMAT_FILES = {"idx": {"images", "labels"}, "table": {"table"}, "libsvm": {"data"}}


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


class Registry:
    """Validated registry entries, looked up by name, alias or ``NAME-tiny``; injectable."""

    def __init__(
        self,
        entries: Mapping[str, DatasetInfo],
        *,
        path: Path | None = None,
        where: str = "<registry>",
    ) -> None:
        self.entries = dict(entries)
        self.path = path
        self.where = where
        self._lookup: dict[str, str] = {}
        for name, info in self.entries.items():
            for key in (name, *info.aliases):
                self._lookup[_normalize(key)] = name

    @classmethod
    def from_dict(
        cls, data: Any, *, where: str = "<registry>", path: Path | None = None
    ) -> Registry:
        """Validate a parsed registry document with jsonschema and build the Registry."""
        _validate_schema(data, where)
        entries = {name: _parse_entry(name, raw) for name, raw in data["datasets"].items()}
        for name, info in entries.items():
            _check_semantics(name, info, entries, where)
        for name, info in entries.items():
            if info.derive:
                # A derived cache is stale whenever its base's entry changes.
                digest = _digest_json([info.entry_digest, entries[info.derive].entry_digest])
                entries[name] = replace(info, entry_digest=digest)
        return cls(entries, path=path, where=where)

    @classmethod
    def load(cls, path: Path | str | None = None) -> Registry:
        """Read and validate a registry YAML file (default: the one shipped in the package)."""
        path = path or os.environ.get("SLAQ_REGISTRY")
        if path is None:
            resource = resources.files(__package__).joinpath(REGISTRY_RESOURCE)
            where = str(resource)
            try:
                text = resource.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise DatasetError(
                    f"the dataset registry {where} is missing from the installed package"
                    " (reinstall slaq-repro, or set SLAQ_REGISTRY to a registry file)"
                ) from None
            file = Path(where) if isinstance(resource, Path) else None
        else:
            file = Path(path)
            where = str(file)
            try:
                text = file.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise DatasetError(f"dataset registry {file} not found") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise DatasetError(f"{where}: not valid YAML: {exc}") from None
        return cls.from_dict(data, where=where, path=file)

    def names(self) -> list[str]:
        """Registered dataset names, in registry order."""
        return list(self.entries)

    def find(self, name: str) -> DatasetInfo | None:
        """The entry for a name, alias, or ``NAME-tiny`` CI subset; None if unknown."""
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
        return None

    def suggest(self, name: str) -> list[str]:
        """Up to three registered names or aliases close to an unknown name."""
        return difflib.get_close_matches(_normalize(name), list(self._lookup), n=3)

    def get(self, name: str) -> DatasetInfo:
        """The entry for a name, alias, or ``NAME-tiny`` CI subset; DatasetError if unknown."""
        info = self.find(name)
        if info is not None:
            return info
        close = self.suggest(name)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise DatasetError(f"unknown dataset {name!r}{hint}; {self.known_names()}")

    def known_names(self) -> str:
        """One line listing the known names, for error messages."""
        return (
            f"known datasets: {', '.join(self.names())}"
            f" (append {TINY_SUFFIX!r} to any for its CI subset)"
        )


def _validate_schema(data: Any, where: str) -> None:
    """DatasetError naming the dataset and field of the first schema violation."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(REGISTRY_SCHEMA)
    errors = sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    if not errors:
        return
    err = errors[0]
    parts = list(err.absolute_path)
    if len(parts) >= 2 and parts[0] == "datasets":
        dotted = ".".join(str(p) for p in parts[2:]) or "(entry)"
        raise DatasetError(f"{where}: dataset {parts[1]!r}: field {dotted!r}: {err.message}")
    dotted = ".".join(str(p) for p in parts) or "(top level)"
    raise DatasetError(f"{where}: field {dotted!r}: {err.message}")


@functools.cache
def _default_registry(path: str) -> Registry:
    return Registry.load(path or None)


def default_registry() -> Registry:
    """The registry at $SLAQ_REGISTRY, else the one shipped in the package (parsed once)."""
    return _default_registry(os.environ.get("SLAQ_REGISTRY") or "")
