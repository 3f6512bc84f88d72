"""Packaging: the registry is package data, every imported package is declared, and a
non-editable install works from outside the source tree."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# Top-level names that are this repository's own code, not distributions.
LOCAL = {"slaq", "baselines", "tests", "benchmarks"}


def _requirement_name(spec: str) -> str:
    return _normalize(re.split(r"[\s<>=!~;\[]", spec, maxsplit=1)[0])


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imports(path: Path) -> set[str]:
    """Top-level modules a Python file, Snakefile or .smk file imports (absolute only)."""
    text = path.read_text()
    if path.suffix == ".py":
        found = set()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
        return found
    return set(re.findall(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)", text, flags=re.M))


def _sources() -> list[Path]:
    files = [p for p in REPO.glob("Snakefile")] + sorted(REPO.glob("rules/*.smk"))
    for folder in ("slaq", "baselines", "benchmarks", "paper-figures", "tests"):
        files += sorted((REPO / folder).rglob("*.py"))
    return files


def test_every_imported_third_party_package_is_declared():
    declared = {_requirement_name(s) for s in PYPROJECT["project"]["dependencies"]}
    test_extra = {
        _requirement_name(s) for s in PYPROJECT["project"]["optional-dependencies"]["test"]
    }
    providers = importlib.metadata.packages_distributions()
    missing = {}
    for path in _sources():
        allowed = declared | (test_extra if "tests" in path.relative_to(REPO).parts else set())
        siblings = {p.stem for p in path.parent.glob("*.py")}
        for module in _imports(path) - LOCAL - siblings - set(sys.stdlib_module_names):
            dists = {_normalize(d) for d in providers.get(module, [])}
            if not dists & allowed:
                missing.setdefault(module, []).append(str(path.relative_to(REPO)))
    assert missing == {}, f"imported but not declared in pyproject.toml: {missing}"


def test_one_snakemake_minimum():
    spec = next(s for s in PYPROJECT["project"]["dependencies"] if s.startswith("snakemake"))
    floor = re.search(r">=\s*(\d+)", spec).group(1)
    snakefile = (REPO / "Snakefile").read_text()
    match = re.search(r"min_version\(\s*[\"'](\d+)", snakefile)
    assert match is not None and match.group(1) == floor, (spec, match and match.group(0))


def test_registry_is_package_data_and_nothing_is_written_to_the_source_tree():
    assert "datasets/registry.yaml" in PYPROJECT["tool"]["setuptools"]["package-data"]["slaq"]
    assert resources.files("slaq.datasets").joinpath("registry.yaml").is_file()
    # The lock and caches belong to the data directory, not to the checkout's datasets/.
    assert not (REPO / "datasets" / "registry.yaml").exists()
    assert not (REPO / "datasets" / "lock.json").exists()
    assert (REPO / "datasets" / "README.md").is_file()


_PROBE = """
import json, sys
from pathlib import Path
import slaq, slaq.datasets as ds
registry = ds.default_registry()
ds.check_dataset_names(["wine", "epsilon-tiny"])
directory = ds.prepare("wine")
print(json.dumps({"slaq": slaq.__file__, "registry": registry.where, "wine": str(directory),
                  "n": len(registry.names())}))
"""


@pytest.mark.slow
def test_non_editable_install_works_outside_the_source_tree(tmp_path):
    src = tmp_path / "src"
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name if src.exists() else _mkdir(src) / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("slaq", "baselines"):
        shutil.copytree(REPO / folder, src / folder, ignore=ignore)
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target)]
    subprocess.run([*pip, str(src)], check=True, timeout=300)
    before = sorted(p for p in target.rglob("*") if "__pycache__" not in p.parts)
    work = _mkdir(tmp_path / "work")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLAQ_")}
    env["PYTHONPATH"] = str(target)
    out = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=work,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    found = __import__("json").loads(out.stdout.strip().splitlines()[-1])
    assert Path(found["slaq"]).is_relative_to(target)
    assert Path(found["registry"]) == target / "slaq" / "datasets" / "registry.yaml"
    assert found["n"] >= 17
    # The default data directory is ./datasets/cache of the working directory.
    assert Path(found["wine"]) == Path("datasets/cache/wine")
    assert (work / "datasets" / "cache" / "wine" / "meta.json").is_file()
    after = sorted(p for p in target.rglob("*") if "__pycache__" not in p.parts)
    assert after == before  # nothing written into the installed package


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
