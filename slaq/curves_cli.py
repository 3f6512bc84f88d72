"""``slaq curves build``: record the curve library (see :mod:`slaq.curves`)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import yaml

from slaq.cli_checks import positive_int
from slaq.curves import DEFAULT_MIN_ITERATIONS, build_curve_library

log = logging.getLogger(__name__)
TEMPLATE_KEYS = ("algorithm", "dataset")


def read_templates(path: Path) -> list[dict[str, Any]]:
    """Templates from a YAML mapping with a ``templates:`` list; ValueError names the entry."""
    raw = yaml.safe_load(Path(path).read_text())
    templates = raw.get("templates") if isinstance(raw, dict) else None
    if not isinstance(templates, list) or not templates:
        raise ValueError(f"{path}: expected a mapping with a non-empty 'templates' list")
    for i, t in enumerate(templates):
        missing = [k for k in TEMPLATE_KEYS if not isinstance(t, dict) or k not in t]
        if missing:
            raise ValueError(f"{path}: templates[{i}] lacks {', '.join(missing)}")
    return templates


def _cmd_build(args: argparse.Namespace) -> int:
    out = build_curve_library(
        read_templates(args.templates),
        Path(args.data_dir),
        Path(args.out),
        min_iterations=args.min_iterations,
        max_iterations=args.max_iterations,
        seed=args.seed,
        processes=args.processes,
    )
    log.info("wrote %s", out)
    return 0


def add_subcommands(subparsers: Any) -> None:
    """Register ``slaq curves build``."""
    curves = subparsers.add_parser("curves", help="curve library of the real trainers")
    sub = curves.add_subparsers(dest="curves_command", required=True)
    build = sub.add_parser("build", help="run every template in-process, write Parquet")
    build.add_argument("--templates", required=True, help="YAML file with a templates: list")
    build.add_argument("--data-dir", required=True, help="dataset cache (blocks go under it)")
    build.add_argument("--out", required=True, help="output Parquet file")
    build.add_argument("--min-iterations", type=int, default=DEFAULT_MIN_ITERATIONS)
    build.add_argument(
        "--max-iterations",
        type=int,
        default=None,
        help="cap while waiting for the tolerance rule (default 4 x min-iterations)",
    )
    build.add_argument("--seed", type=int, default=0)
    build.add_argument(
        "--processes", type=positive_int, default=1, help="templates run in parallel (default 1)"
    )
    build.set_defaults(func=_cmd_build)
