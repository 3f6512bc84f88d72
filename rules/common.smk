# Config coercion and validation, parse-time checks, and the helpers every stage shares.
import importlib.util
import json
import os
import re
import shlex
import sys
from pathlib import Path

import yaml
from snakemake.utils import validate

SCHEMA_FILE = Path(workflow.basedir) / "config" / "schema.yaml"


def _deref(schema, root):
    """Follow a local '$ref' (#/$defs/NAME) so coercion sees the referenced schema."""
    while "$ref" in schema:
        node = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


_SCALARS = {"integer": int, "number": (int, float), "boolean": bool}


def _coerce_scalar(value, kind):
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    # bool is an int to Python, but not an integer or number to the schema.
    if isinstance(parsed, bool) and kind != "boolean":
        return value
    return parsed if isinstance(parsed, _SCALARS[kind]) else value


def coerce(value, schema, root):
    """Turn the strings Snakemake makes of `--config` values back into schema types.

    Snakemake parses `--config k=v` values with YAML's BaseLoader, so `seeds=[0,1,2]` arrives
    as ['0', '1', '2'] and `live={enabled: false}` as {'enabled': 'false'}. Only strings where
    the schema wants an integer, number or boolean are converted; anything else is left for
    the validator to report.
    """
    schema = _deref(schema, root)
    kind = schema.get("type")
    if isinstance(value, str) and kind in _SCALARS:
        return _coerce_scalar(value, kind)
    if isinstance(value, str) and "anyOf" in schema:
        # e.g. work_scale: a number or 'auto'; the first scalar branch that parses wins.
        for branch in schema["anyOf"]:
            kind = _deref(branch, root).get("type")
            if kind in _SCALARS and _coerce_scalar(value, kind) is not value:
                return _coerce_scalar(value, kind)
    if isinstance(value, list):
        return [coerce(v, schema.get("items", {}), root) for v in value]
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        extra = extra if isinstance(extra, dict) else {}
        return {k: coerce(v, props.get(k, extra), root) for k, v in value.items()}
    return value


def load_checked_config(config):
    """Coerce and validate the merged config in place (the schema sets no defaults)."""
    schema = yaml.safe_load(SCHEMA_FILE.read_text())
    fixed = coerce(dict(config), schema, schema)
    config.clear()
    config.update(fixed)
    validate(config, str(SCHEMA_FILE), set_default=False)


load_checked_config(config)


class ConfigError(ValueError):
    """A config that validates against the schema but names something that does not exist."""


def known_policy_names():
    from slaq.policy import available_policies

    return set(available_policies())


def dataset_checker():
    """slaq.datasets.check_dataset_names if the library has it, else the registry's lookup."""
    import slaq.datasets as datasets

    if hasattr(datasets, "check_dataset_names"):
        return datasets.check_dataset_names

    def check(names):
        registry = datasets.default_registry()
        unknown = sorted(n for n in names if registry.find(n) is None)
        if unknown:
            raise ConfigError(
                f"unknown dataset(s) {', '.join(unknown)}; see `slaq datasets list`"
            )

    return check


def policy_source(spec):
    """The source file of a plug-in policy (package.module:Class), None for registered names.

    It becomes an input of every run of that policy, so editing it reruns them.
    """
    if ":" not in spec:
        return None
    module_name = spec.partition(":")[0]
    try:
        found = importlib.util.find_spec(module_name)
    except (ImportError, ValueError) as exc:
        found, why = None, f": {exc}"
    else:
        why = " (is its directory on PYTHONPATH?)"
    if found is None or not found.origin or not os.path.isfile(found.origin):
        raise ConfigError(f"policy {spec!r}: cannot find module {module_name!r}{why}")
    return found.origin


def check_names(config):
    """Unknown policies, datasets and cross-references fail here, before any job runs."""
    policies = config["policies"]
    known = known_policy_names()
    for label, entry in policies.items():
        if ":" not in entry["spec"] and entry["spec"] not in known:
            raise ConfigError(
                f"policy {label!r}: unknown policy {entry['spec']!r}; known: "
                f"{', '.join(sorted(known))} (or package.module:Class)"
            )
        policy_source(entry["spec"])
    sweep = config["sweep"]
    refs = [
        ("baseline", config["baseline"], policies),
        ("sweep.ablation.policy", sweep["ablation"]["policy"], policies),
        ("sweep.headline_load", sweep["headline_load"], sweep["loads"]),
        ("sweep.ablation.load", sweep["ablation"]["load"], sweep["loads"]),
        ("sweep.ablation.mix", sweep["ablation"]["mix"], sweep["mixes"]),
    ]
    if config["live"]["enabled"]:
        refs.append(("baseline (live.policies)", config["baseline"], config["live"]["policies"]))
    refs += [("live.policies", label, policies) for label in config["live"]["policies"]]
    for key, value, allowed in refs:
        if value not in allowed:
            raise ConfigError(f"{key} {value!r} must be one of {list(allowed)}")
    templates = config["live"]["workload"]["templates"] + config["curves"]["templates"]
    dataset_checker()(sorted({t["dataset"] for t in templates}))
    results = Path(config["results_dir"])
    if results not in Path(config["figures_dir"]).parents:
        raise ConfigError(
            f"figures_dir {config['figures_dir']!r} must lie under results_dir {str(results)!r}:"
            " runs write under results only (reference figures: the reference_figures target)"
        )


check_names(config)

# Commands (slaq, python) resolve to the environment running Snakemake, so
# `.venv/bin/snakemake` works without an activated venv.
envvars:
    "PATH",


os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"

# One Spark cluster at a time: live runs and the premise benchmark each take this resource.
workflow.global_resources.setdefault("spark_cluster", 1)

R = config["results_dir"]
F = config["figures_dir"]
SEEDS = config["seeds"]
LIVE = config["live"]
SWEEP = config["sweep"]
POLICIES = config["policies"]
LIVE_POLICIES = LIVE["policies"]
BASE = config["baseline"]
RUN_LIVE = LIVE["enabled"]
RUN_SWEEP = SWEEP["enabled"]
# Out-of-sample fidelity calibrates on the first seed and predicts the others.
RUN_FIDELITY = RUN_LIVE and len(SEEDS) > 1
PLOTS = str(Path(workflow.basedir) / "paper-figures" / "plots.py")
PREMISE = str(Path(workflow.basedir) / "benchmarks" / "premise.py")
SCALING = str(Path(workflow.basedir) / "benchmarks" / "scaling.py")
CAPTIONS = Path(workflow.basedir) / "paper-figures" / "captions"


def load_label(x):
    """A load as it appears in paths and wildcards: 0.5 -> '0.5', 2.0 -> '2'."""
    return f"{float(x):g}"


LOADS = [load_label(x) for x in SWEEP["loads"]]
HEADLINE_LOAD = load_label(SWEEP["headline_load"])


def arg_flags(args):
    """--policy-arg flags; strings go raw because `slaq` parses each value as YAML, so a
    value given as the string '1' through `--config` means the same as the integer 1."""
    flags = []
    for key, value in (args or {}).items():
        raw = value if isinstance(value, str) else json.dumps(value)
        flags.append(f"--policy-arg {shlex.quote(f'{key}={raw}')}")
    return " ".join(flags)


def variants():
    """Sweep cell variants: every policy, plus the ablation's policy at each (min_cores,
    floor_share).

    A combination the policy already has is its own cell, not a second copy: the sweep report
    labels cells by policy and arguments, and two runs under one label would collide.
    """
    from slaq.policy import load_policy

    table = {label: (p["spec"], p.get("args") or {}) for label, p in POLICIES.items()}
    ablation = SWEEP["ablation"]
    name = ablation["policy"]
    spec, args = table[name]
    base = load_policy(spec, **args)
    for k in ablation["min_cores"]:
        for share in ablation["floor_shares"]:
            if (base.min_cores, base.floor_share) == (k, share):
                continue
            label = f"{name}-min_cores-{k}"
            extra = {"min_cores": k}
            if share != base.floor_share:
                label += f"-floor_share-{share:g}"
                extra["floor_share"] = share
            table[label] = (spec, {**args, **extra})
    return table


def report_label(spec, args):
    """The label `slaq sweep report` and `slaq fidelity` give a policy (slaq.sweep.policy_label:
    the name, plus [k=v,...] when it has arguments); for a registered policy name == spec."""
    if not args:
        return spec
    pairs = ",".join(f"{k}={args[k]}" for k in sorted(args))
    return f"{spec}[{pairs}]"


VARIANTS = variants()
SOURCES = {label: policy_source(spec) for label, (spec, _) in VARIANTS.items()}


def policy_inputs(wildcards):
    """A plug-in policy's source file, so that editing it reruns the runs using it."""
    label = getattr(wildcards, "variant", None) or wildcards.policy
    return [SOURCES[label]] if SOURCES[label] else []


def alternatives(names):
    """A wildcard constraint matching exactly these names."""
    return "|".join(re.escape(n) for n in names)


wildcard_constraints:
    policy=alternatives(POLICIES),
    variant=alternatives(VARIANTS),
    seed="[0-9]+",
    mix=alternatives(SWEEP["mixes"]),
    load=alternatives(LOADS + [load_label(SWEEP["ablation"]["load"])]),


def live_runs(policies=None, seeds=None):
    """Live run directories (none when live runs are switched off)."""
    if not RUN_LIVE:
        return []
    return expand(
        f"{R}/live/{{policy}}-{{seed}}",
        policy=policies if policies is not None else LIVE_POLICIES,
        seed=seeds if seeds is not None else SEEDS,
    )


def replay_runs():
    return [d.replace(f"{R}/live/", f"{R}/replay/", 1) for d in live_runs()]


def cell_dir(mix, load, variant, seed):
    return f"{R}/sweep/{mix}/load-{load}/{variant}/seed-{seed}"


def sweep_cells():
    """Every cell: mixes x loads x policies x seeds, plus the min_cores ablation."""
    if not RUN_SWEEP:
        return []
    cells = [
        cell_dir(mix, load, policy, seed)
        for mix in SWEEP["mixes"]
        for load in LOADS
        for policy in POLICIES
        for seed in SWEEP["seeds"]
    ]
    ablation = SWEEP["ablation"]
    cells += [
        cell_dir(ablation["mix"], load_label(ablation["load"]), variant, seed)
        for variant in VARIANTS
        if variant not in POLICIES
        for seed in SWEEP["seeds"]
    ]
    return cells


def live_metrics():
    return expand(f"{R}/metrics/live-{{seed}}.json", seed=SEEDS) if RUN_LIVE else []


def sim_metrics():
    """Simulated comparisons: the smooth mix at the headline load, one file per sweep seed."""
    if not (RUN_SWEEP and "smooth" in SWEEP["mixes"]):
        return []
    return expand(f"{R}/metrics/sim-{{seed}}.json", seed=SWEEP["seeds"])


def fidelity_files():
    return [f"{R}/fidelity.json"] if RUN_FIDELITY else []


def sweep_report():
    return [f"{R}/sweep/sweep.json"] if RUN_SWEEP else []


def premise_report():
    return [f"{R}/benchmarks/premise.json"] if config["premise"]["enabled"] else []


def scaling_report():
    return [f"{R}/benchmarks/scaling.json"] if config["scaling"]["enabled"] else []


def figure_files(suffix=".png", directory=F):
    """The figures this configuration draws (FIGURES and WANTED: rules/figures.smk)."""
    return expand(f"{directory}/{{fig}}{suffix}", fig=WANTED)


def figure_flags(wildcards):
    """--live A B --sim C ...: one flag per input group, as plots.py takes them."""
    groups = FIGURES[wildcards.fig][1]().items()
    return " ".join(f"--{k} {' '.join(map(shlex.quote, v))}" for k, v in groups if v)
