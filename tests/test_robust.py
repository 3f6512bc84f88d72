"""Robust SLAQ: each mechanism on a tiny hand-made case, and equality with SLAQ when all off."""

import dataclasses
from dataclasses import replace

import numpy as np
import pytest

from slaq.policy import ClusterView, JobView, RuntimeFit, load_policy
from slaq.predict import fit_geometric, fit_loss_model
from slaq.robust import MECHANISMS, RobustSlaqPolicy, fit_trend, unreliability
from slaq.scheduler import SlaqPolicy
from slaq.sim import SimJob, run_simulation
from slaq.workload import JobSpec

OFF = dict.fromkeys(MECHANISMS, False)


def view(job_id, losses, arrival=0.0, work=3.0, starved_s=0.0, max_cores=None):
    return JobView.of(
        job_id,
        losses,
        arrival_s=arrival,
        runtime=RuntimeFit(work, 0.0),
        max_cores=max_cores,
        starved_s=starved_s,
    )


def smooth(n, a=0.01, b=0.5, c=1.0, d=0.25):
    k = np.arange(1, n + 1, dtype=float)
    return 1.0 / (a * k * k + b * k + c) + d


def noisy(n, seed=0, noise=0.05):
    rng = np.random.default_rng(seed)
    return smooth(n) * (1.0 + noise * rng.standard_normal(n))


def flat_then_drop(n, flat):
    return np.concatenate([np.full(flat, 2.0), 2.0 - np.cumsum(np.full(n - flat, 0.05))])


def test_registered_and_default_mechanisms():
    policy = load_policy("slaq-robust")
    assert isinstance(policy, RobustSlaqPolicy)
    assert policy.name == "slaq-robust" and policy.min_cores == 1
    assert policy.denoise and not (policy.anti_starvation or policy.explore or policy.plateau)
    with pytest.raises(ValueError):
        RobustSlaqPolicy(explore_share=1.5)


def test_unreliability_is_zero_for_smooth_curves_and_high_for_noise():
    assert unreliability(smooth(40), 16) == 0.0
    pure_noise = 1.0 + 0.01 * np.random.default_rng(1).normal(size=30)
    assert unreliability(pure_noise, 16) > 0.5


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("n", [4, 8, 20, 60])
def test_noisy_prediction_is_finite_bounded_and_non_increasing(seed, n):
    losses = noisy(n, seed)
    trend = fit_trend(losses, 16)
    ahead = trend.model.predict_ahead(np.array([0.0, 1.0, 10.0, 100.0, 1e6]))
    assert np.all(np.isfinite(ahead))
    assert np.all(np.diff(ahead) <= 1e-12)
    # A positive loss never predicted below 0, nor above where the trend is now.
    assert ahead[-1] >= -1e-12 and ahead[0] <= losses.max()
    assert 0 < trend.scale <= np.max(losses[:-1] - losses[1:])
    assert np.isfinite(trend.rate_se) and 0 <= trend.relative_uncertainty <= 1


def test_noise_aware_prediction_tracks_the_trend_where_the_ratio_rule_gives_up():
    # Find a noisy history whose last step went up: the prototype's rule predicts no gain.
    for seed in range(50):
        losses = noisy(30, seed)
        if losses[-1] > losses[-2]:
            break
    assert fit_geometric(losses).family == "constant"
    trend = fit_trend(losses, 16)
    true_rate = -np.log(smooth(31)[-1] / smooth(31)[-2])
    assert trend.rate > 0
    assert trend.rate == pytest.approx(true_rate, rel=2.0)


def test_noisy_job_is_not_starved_by_the_ratio_rule():
    # Same curves; one job's last step went up by noise. Plain SLAQ gives it only its floor.
    for seed in range(50):
        losses = noisy(30, seed)
        if losses[-1] > losses[-2]:
            break
    jobs = [view("noisy", losses), view("smooth", smooth(30)), view("other", smooth(12) * 2)]
    cluster = ClusterView(48, 3.0, 0.0)
    plain = SlaqPolicy(min_cores=1, predictor="geometric").allocate(cluster, jobs).cores
    robust = RobustSlaqPolicy().allocate(cluster, jobs).cores
    assert plain["noisy"] == 1
    assert robust["noisy"] > 1
    assert sum(robust.values()) == 48


def test_anti_starvation_gives_a_long_starved_job_its_fair_share():
    jobs = [view("flat", np.full(10, 2.0), starved_s=60.0), view("busy", smooth(5))]
    cluster = ClusterView(20, 3.0, 0.0)
    assert SlaqPolicy(min_cores=0, predictor="geometric").allocate(cluster, jobs).cores["flat"] == 0
    guarded = RobustSlaqPolicy(min_cores=0, **{**OFF, "anti_starvation": True})
    assert guarded.allocate(cluster, jobs).cores["flat"] >= 10
    fresh = [dataclasses.replace(jobs[0], starved_s=3.0), jobs[1]]
    assert guarded.allocate(cluster, fresh).cores["flat"] == 0


def test_plateau_job_gets_the_fair_share_until_it_starts_dropping():
    jobs = [view("flat", np.full(6, 2.0)), view("busy", smooth(5)), view("busy2", smooth(9))]
    cluster = ClusterView(30, 3.0, 0.0)
    policy = RobustSlaqPolicy(min_cores=0, **{**OFF, "plateau": True})
    assert policy.allocate(cluster, jobs).cores["flat"] >= 10
    dropped = [view("flat", [*np.full(6, 2.0), 1.0, 0.99]), *jobs[1:]]
    assert policy.allocate(cluster, dropped).cores["flat"] < 10


def test_exploration_reserves_cores_for_unreliable_jobs_only():
    jobs = [view("noisy", noisy(40, 3)), view("a", smooth(20)), view("b", smooth(20) * 3)]
    cluster = ClusterView(100, 3.0, 0.0)
    policy = RobustSlaqPolicy(**{**OFF, "explore": True}, explore_share=0.2)
    floors = policy._guarantees(cluster, jobs)
    assert floors[0] >= 10 and floors[1] == floors[2] == 0
    assert policy.allocate(cluster, jobs).cores["noisy"] >= floors[0]


@pytest.mark.parametrize("mechanism", ["anti_starvation", "plateau"])
def test_plateau_job_is_not_starved_forever_in_a_simulation(mechanism):
    # A job flat for 10 iterations (exactly: the ratio rule predicts no gain) competes with a
    # stream of short smooth jobs. With a floor of 0, plain SLAQ runs it only through the cracks
    # (leftover cores, and an iteration once started keeps its cores, as on Spark), so it ends
    # late in the stream; with either guard it finishes early in the stream.
    def job(job_id, losses, arrival, work):
        spec = JobSpec(job_id, "synthetic", "synthetic", arrival, max_iter=len(losses), tol=0.0)
        return SimJob(spec, np.asarray(losses, float), work, 0.0)

    jobs = [job("plateau", flat_then_drop(15, 10), 0.0, 4.0)]
    jobs += [job(f"s{i}", smooth(10) * (1 + i % 3), 3.0 * i, 3.0) for i in range(1, 40)]
    last_arrival = jobs[-1].spec.arrival_s

    def finish(policy):
        return run_simulation(jobs, policy, cores=8, epoch_s=3.0).states["plateau"].finished_s

    guarded = RobustSlaqPolicy(min_cores=0, starve_after_s=6.0, **{**OFF, mechanism: True})
    assert finish(SlaqPolicy(min_cores=0, predictor="geometric")) > last_arrival / 2
    assert finish(guarded) < last_arrival / 4


def random_jobs(rng):
    jobs = []
    for i in range(int(rng.integers(1, 20))):
        n = int(rng.integers(1, 30))
        kind = rng.integers(0, 3)
        if kind == 0:
            losses = smooth(n, a=rng.uniform(0.001, 0.02), d=rng.uniform(0, 0.5))
        elif kind == 1:
            losses = noisy(n, seed=int(rng.integers(1 << 30)), noise=rng.uniform(0.01, 0.2))
        else:
            losses = flat_then_drop(max(n, 2), int(rng.integers(1, max(n, 2))))
        jobs.append(
            view(
                f"j{i}",
                losses,
                arrival=float(i),
                work=float(rng.uniform(0.5, 8)),
                starved_s=float(rng.uniform(0, 100)),
                max_cores=None if rng.random() < 0.8 else int(rng.integers(1, 20)),
            )
        )
    return jobs


def test_all_mechanisms_off_equals_plain_slaq_on_random_instances():
    rng = np.random.default_rng(7)
    for trial in range(60):
        jobs = random_jobs(rng)
        cluster = ClusterView(int(rng.integers(1, 300)), 3.0, 0.0)
        params = {
            "min_cores": int(rng.integers(0, 4)),
            "objective": str(rng.choice(["total", "maxmin"])),
            # Curve fits are slow; every fifth instance is enough to cover them.
            "predictor": "curvefit" if trial % 5 == 0 else "geometric",
        }
        plain = SlaqPolicy(**params)
        robust = RobustSlaqPolicy.plain(**params)
        jobs = [replace(j, loss_model=fit_loss_model(j.losses, params["predictor"])) for j in jobs]
        assert robust.allocate(cluster, jobs) == plain.allocate(cluster, jobs)


def test_allocations_are_valid_with_every_mechanism_on():
    rng = np.random.default_rng(11)
    policy = RobustSlaqPolicy(**dict.fromkeys(MECHANISMS, True), explore_share=0.3)
    for _ in range(40):
        jobs = random_jobs(rng)
        total = int(rng.integers(1, 200))
        alloc = policy.allocate(ClusterView(total, 3.0, 0.0), jobs).cores
        assert set(alloc) == {j.job_id for j in jobs}
        assert sum(alloc.values()) <= total and min(alloc.values()) >= 0
        for j in jobs:
            assert j.max_cores is None or alloc[j.job_id] <= j.max_cores
