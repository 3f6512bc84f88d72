"""``slaq datasets list``, ``slaq datasets fetch`` and ``slaq datasets verify``."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

from slaq.datasets.cache import read_meta, resolve_cache_dir
from slaq.datasets.loader import prepare
from slaq.datasets.names import check_dataset_names, datasets_for_config
from slaq.datasets.registry import DatasetError, Registry, default_registry
from slaq.datasets.verify import CORRUPT, require_data_dir, verify_data_dir
from slaq.traces import write_text_atomic

log = logging.getLogger("slaq.datasets")


def _registry(args: argparse.Namespace) -> Registry:
    return Registry.load(args.registry) if args.registry else default_registry()


def _cmd_list(args: argparse.Namespace) -> int:
    registry = _registry(args)
    root = resolve_cache_dir(args.data_dir)
    rows = [("NAME", "TASK", "ROWS x FEATURES", "OFFLINE", "CACHED", "FIRST SOURCE")]
    for name in registry.names():
        info = registry.entries[name]
        first = info.sources[0] if info.sources else f"derived:{info.derive}"
        cached = read_meta(root / name, info) is not None
        # A derived set is as available as the set it derives from.
        offline = "yes" if registry.entries[info.derive or name].offline else "no"
        shape = f"{info.shape[0]:,} x {info.shape[1]:,}"
        rows.append((name, info.task, shape, offline, "yes" if cached else "-", first))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1])
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    import yaml

    registry = _registry(args)
    names = list(args.names)
    data_dir = args.data_dir
    if args.config:
        try:
            config = yaml.safe_load(Path(args.config).read_text()) or {}
        except yaml.YAMLError as exc:
            raise DatasetError(f"{args.config}: not valid YAML: {exc}") from None
        names += [n for n in datasets_for_config(config) if n not in names]
        # Precedence: --data-dir, then $SLAQ_DATA_DIR, then the config's data_dir.
        if data_dir is None and not os.environ.get("SLAQ_DATA_DIR") and config.get("data_dir"):
            data_dir = config["data_dir"]
    if not names and not args.manifest:
        raise DatasetError("give dataset names or --config FILE (see `slaq datasets list`)")
    if not names:
        log.warning("no datasets to fetch")
    # Every name before any download or conversion: a typo fails at once.
    check_dataset_names(names, registry=registry)
    manifest: dict[str, Any] = {}
    root = resolve_cache_dir(data_dir)
    for name in names:
        directory = prepare(
            name, cache_dir=root, allow_download=not args.offline, registry=registry
        )
        meta = json.loads((directory / "meta.json").read_text())
        manifest[meta["name"]] = {
            "path": str(directory),
            "task": meta["task"],
            "shape": meta["shape"],
            "sha256": meta["sha256"],
            "dropped_rows": meta.get("dropped_rows", 0),
            "files": meta.get("files", {}),
        }
        log.info("%s ready: %s x %s in %s", meta["name"], *meta["shape"], directory)
    if args.manifest:
        text = json.dumps({"data_dir": str(root), "datasets": manifest}, indent=2)
        write_text_atomic(Path(args.manifest), text + "\n")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    registry = _registry(args)
    root = require_data_dir(resolve_cache_dir(args.data_dir))
    findings = verify_data_dir(root, registry, args.names or None)
    for f in findings:
        detail = f"  {f.detail}" if f.detail else ""
        print(f"{f.status:<10}  {f.kind:<9}  {f.path}{detail}")
    corrupt = [f for f in findings if f.status == CORRUPT]
    if corrupt:
        log.error("%d of %d cached artefacts in %s are corrupt", len(corrupt), len(findings), root)
        return 1
    log.info("%d cached artefacts in %s checked, none corrupt", len(findings), root)
    return 0


def add_subcommands(subparsers: Any) -> None:
    """Add ``datasets list``, ``fetch`` and ``verify`` to the ``slaq`` command's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir", help="data directory (default $SLAQ_DATA_DIR, else ./datasets/cache)"
    )
    common.add_argument(
        "--registry", help="registry YAML (default $SLAQ_REGISTRY, else the one shipped)"
    )
    parser = subparsers.add_parser("datasets", help="list, download and convert datasets")
    sub = parser.add_subparsers(dest="datasets_command", required=True)

    p = sub.add_parser("list", parents=[common], help="table of registered datasets")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser(
        "fetch",
        parents=[common],
        help="download (if needed), verify and convert datasets into the cache",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="dataset names (NAME-tiny: CI subset)")
    p.add_argument("--config", help="pipeline config YAML: fetch every dataset it uses")
    p.add_argument("--manifest", help="write a JSON manifest of the prepared datasets")
    p.add_argument("--offline", action="store_true", help="never download; offline sources only")
    p.set_defaults(func=_cmd_fetch)

    p = sub.add_parser(
        "verify",
        parents=[common],
        help="re-hash every cached file against its recorded digest (exit 1 if any is corrupt)",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="only these datasets (default: all)")
    p.set_defaults(func=_cmd_verify)
