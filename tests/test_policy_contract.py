"""Policy registry and allocation validation: every bad answer gets a clear error."""

import pytest

from slaq.policy import (
    ClusterView,
    JobView,
    PolicyError,
    PolicyTraits,
    available_policies,
    load_policy,
    parse_policy_args,
    validate_allocation,
)

JOBS = [JobView.of(j, [1.0]) for j in ("a", "b")]
CLUSTER = ClusterView(total_cores=4, epoch_s=3.0, now_s=0.0)


class Fixed:
    """A policy returning a fixed answer."""

    name = "fixed"
    traits = PolicyTraits()

    def __init__(self, answer=None):
        self.answer = answer or {}

    def allocate(self, cluster, jobs):
        return self.answer


def test_registered_policies_include_slaq_and_baselines():
    assert {"slaq", "fair", "fifo", "spark-fair"} <= set(available_policies())
    assert load_policy("slaq", min_cores=2).min_cores == 2


def test_unknown_policy_lists_known_ones():
    with pytest.raises(PolicyError, match=r"unknown policy 'nope'.*fair.*slaq"):
        load_policy("nope")


def test_dotted_path_with_parameters():
    policy = load_policy("tests.test_policy_contract:Fixed", answer={"a": 1})
    assert policy.allocate(CLUSTER, JOBS) == {"a": 1}


@pytest.mark.parametrize(
    "spec, match",
    [("no_such_module_xyz:P", "cannot import"), ("slaq.policy:Missing", "no policy class")],
)
def test_bad_dotted_paths(spec, match):
    with pytest.raises(PolicyError, match=match):
        load_policy(spec)


def test_bad_policy_parameters_name_the_policy():
    with pytest.raises(PolicyError, match="cannot build policy 'slaq'"):
        load_policy("slaq", bogus=1)


@pytest.mark.parametrize(
    "answer, match",
    [
        ({"a": -1}, "negative cores"),
        ({"a": 3, "b": 2}, "allocated 5 cores but the cluster has 4"),
        ({"zzz": 1}, "unknown or inactive jobs"),
        ({"a": 1.5}, "non-integer"),
        ([1, 2], "expected a mapping"),
    ],
)
def test_invalid_allocations_name_the_policy(answer, match):
    with pytest.raises(PolicyError, match=match) as info:
        validate_allocation("fixed", answer, CLUSTER, JOBS)
    assert "'fixed'" in str(info.value)


def test_valid_allocation_fills_missing_jobs_with_zero():
    assert validate_allocation("fixed", {"a": 2.0}, CLUSTER, JOBS) == {"a": 2, "b": 0}


def test_policy_args_are_parsed():
    assert parse_policy_args(["min_cores=2", "predictor=geometric", "new_job_rule=false"]) == {
        "min_cores": 2,
        "predictor": "geometric",
        "new_job_rule": False,
    }
    with pytest.raises(PolicyError, match="key=value"):
        parse_policy_args(["oops"])
