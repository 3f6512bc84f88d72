"""SLAQ allocation against hand-computed splits and brute-force optima."""

import itertools
from dataclasses import replace

import numpy as np
import pytest

from baselines.fair import FairPolicy
from baselines.fifo import FifoPolicy
from slaq.allocate import greedy_fast, greedy_heap, spread_evenly
from slaq.policy import ClusterView, JobView, RuntimeFit
from slaq.predict import fit_loss_model
from slaq.scheduler import SlaqPolicy


def view(job_id, losses, arrival=0.0, work=3.0, max_cores=None, predictor="geometric"):
    runtime = RuntimeFit(work, 0.0)
    return JobView.of(
        job_id, losses, arrival_s=arrival, runtime=runtime, predictor=predictor, max_cores=max_cores
    )


def refitted(jobs, predictor):
    """The same snapshots with the loss model the decision loop would fit for ``predictor``."""
    return [replace(j, loss_model=fit_loss_model(j.losses, predictor)) for j in jobs]


# Epoch 3 s and 3 s of work per iteration: a job on a cores runs exactly a iterations, so with
# the geometric rule (L_{n+k} = L_n r^k) the a-th core's gain is L r^(a-1) (1 - r) / max_drop:
#   A [2, 1]:     0.5^a   = 0.5, 0.25
#   B [1, 0.9]:   0.9^a   = 0.9, 0.81, 0.729
#   C [10, 9.5]:  0.95^a  = 0.95, 0.9025, 0.857, 0.8145, 0.774
THREE = [view("A", [2.0, 1.0]), view("B", [1.0, 0.9]), view("C", [10.0, 9.5])]


@pytest.mark.parametrize("implementation", ["fast", "heap"])
def test_three_jobs_hand_computed_split(implementation):
    policy = SlaqPolicy(min_cores=0, predictor="geometric", implementation=implementation)
    # Six best marginals: C .95, C .9025, B .9, C .857, C .8145, B .81.
    assert policy.allocate(ClusterView(6, 3.0, 0.0), THREE).cores == {"A": 0, "B": 2, "C": 4}
    floor = SlaqPolicy(min_cores=1, predictor="geometric", implementation=implementation)
    # Floors 1/1/1, then C .9025, C .857, C .8145 (all above B's .81).
    assert floor.allocate(ClusterView(6, 3.0, 0.0), THREE).cores == {"A": 1, "B": 1, "C": 4}


def test_new_jobs_get_the_fair_share_and_the_rest_goes_greedily():
    jobs = [*THREE, view("new", [5.0])]
    alloc = (
        SlaqPolicy(min_cores=1, predictor="geometric")
        .allocate(ClusterView(8, 3.0, 0.0), jobs)
        .cores
    )
    assert alloc["new"] == 8 // 4
    assert sum(alloc.values()) == 8
    # The remaining 3 cores after floors go C .9025, C .857, C .8145.
    assert alloc == {"A": 1, "B": 1, "C": 4, "new": 2}


def test_maxmin_serves_the_worst_predicted_job_first():
    # Same shapes, but job "far" still has most of its reduction ahead of it.
    jobs = [view("near", [2.0, 1.0, 0.5, 0.25]), view("far", [10.0, 9.9])]
    alloc = (
        SlaqPolicy(objective="maxmin", min_cores=0, predictor="geometric")
        .allocate(ClusterView(4, 3.0, 0.0), jobs)
        .cores
    )
    assert alloc["far"] > alloc["near"]
    assert sum(alloc.values()) == 4


def test_cores_are_never_overcommitted_when_floors_do_not_fit():
    jobs = [view(f"j{i}", [2.0, 1.0], arrival=i) for i in range(5)]
    alloc = SlaqPolicy(min_cores=3).allocate(ClusterView(4, 3.0, 0.0), jobs).cores
    assert sum(alloc.values()) == 4 and min(alloc.values()) >= 0


def test_max_cores_is_respected_and_leftover_spread():
    jobs = [view("a", [2.0, 1.0], max_cores=2), view("b", [2.0, 1.9], max_cores=3)]
    alloc = (
        SlaqPolicy(min_cores=0, predictor="geometric")
        .allocate(ClusterView(16, 3.0, 0.0), jobs)
        .cores
    )
    assert alloc == {"a": 2, "b": 3}


def random_concave(rng, n, room):
    """Random strictly decreasing positive marginal tables (some ending in non-positive)."""
    tables = []
    for _ in range(n):
        steps = np.sort(rng.uniform(-0.2, 1.0, size=room))[::-1]
        tables.append(steps * rng.uniform(0.1, 3.0))
    return np.array(tables)


def oracle(tables):
    return lambda rows, a: tables[rows, a - 1]


def test_fast_greedy_equals_heap_on_random_concave_instances():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 30))
        room = int(rng.integers(1, 40))
        tables = random_concave(rng, n, room)
        rooms = rng.integers(0, room + 1, size=n)
        budget = int(rng.integers(0, n * room + 5))
        np.testing.assert_array_equal(
            greedy_fast(rooms, oracle(tables), budget), greedy_heap(rooms, oracle(tables), budget)
        )


def test_fast_greedy_breaks_ties_like_the_heap():
    tables = np.array([[1.0, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.1], [0.7, 0.5, 0.0, 0.0]])
    rooms = np.array([4, 4, 4])
    for budget in range(0, 12):
        np.testing.assert_array_equal(
            greedy_fast(rooms, oracle(tables), budget), greedy_heap(rooms, oracle(tables), budget)
        )


def test_greedy_matches_brute_force_optimum():
    rng = np.random.default_rng(1)
    for _ in range(100):
        n, room = int(rng.integers(1, 4)), 5
        tables = np.sort(rng.uniform(0.0, 1.0, size=(n, room)), axis=1)[:, ::-1].copy()
        budget = int(rng.integers(0, 8))
        rooms = np.full(n, room)
        extra = greedy_fast(rooms, oracle(tables), budget)
        best = max(
            sum(tables[i, : split[i]].sum() for i in range(n))
            for split in itertools.product(range(room + 1), repeat=n)
            if sum(split) <= budget
        )
        got = sum(tables[i, : extra[i]].sum() for i in range(n))
        assert got == pytest.approx(best)


def test_policy_fast_equals_heap_on_random_histories():
    rng = np.random.default_rng(2)
    for _ in range(20):
        jobs = []
        for i in range(int(rng.integers(2, 25))):
            k = np.arange(1, int(rng.integers(2, 15)) + 1.0)
            losses = rng.uniform(0.5, 3) / (rng.uniform(0.1, 1) * k + 1) + rng.uniform(0, 0.5)
            jobs.append(view(f"j{i}", losses, work=float(rng.uniform(0.5, 6))))
        cluster = ClusterView(int(rng.integers(4, 300)), 3.0, 0.0)
        for predictor in ("geometric", "curvefit"):
            fitted = refitted(jobs, predictor)
            fast = SlaqPolicy(predictor=predictor, implementation="fast").allocate(cluster, fitted)
            heap = SlaqPolicy(predictor=predictor, implementation="heap").allocate(cluster, fitted)
            assert fast == heap
            assert sum(fast.cores.values()) == cluster.total_cores


def test_spread_evenly_respects_caps():
    out = spread_evenly(np.array([0, 0, 0]), 10, np.array([1, 100, 100]))
    assert out.tolist() == [1, 5, 4]


def test_fair_shares_equal_with_remainder_by_arrival():
    jobs = [
        view("late", [1.0], arrival=5.0),
        view("early", [1.0], arrival=1.0),
        view("mid", [1.0], arrival=2.0),
    ]
    assert FairPolicy().allocate(ClusterView(8, 3.0, 0.0), jobs).cores == {
        "early": 3,
        "mid": 3,
        "late": 2,
    }


def test_fifo_fills_in_arrival_order():
    jobs = [view("b", [1.0], arrival=2.0, max_cores=3), view("a", [1.0], arrival=1.0, max_cores=4)]
    assert FifoPolicy().allocate(ClusterView(10, 3.0, 0.0), jobs).cores == {"a": 4, "b": 3}
