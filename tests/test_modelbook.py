"""The loop's model book: which decisions refit a job's curve and which only re-anchor it."""

import numpy as np
import pytest

from slaq.jobstate import JobState
from slaq.loop import ModelBook
from slaq.predict import RuntimeModel
from slaq.workload import JobSpec

CURVE = 1.0 / (0.05 * np.arange(1, 200) + 1.0) + 0.1


def _job(n: int, job_id: str = "j") -> JobState:
    state = JobState(
        JobSpec(job_id, "synthetic", "synthetic", 0.0, max_iter=500, tol=0.0), RuntimeModel()
    )
    _grow(state, n)
    return state


def _grow(state: JobState, to: int) -> None:
    for loss in CURVE[len(state.history) : to]:
        state.history.append(float(loss))


def test_due_refits_wait_for_the_gathering_decision_but_young_jobs_do_not():
    # Hand-computed schedule: a fit at n is due after max(1, n // 8) more losses; with
    # refit_every=4 only decisions 0, 4, 8, ... refit due jobs. A history shorter than 10
    # (2 x MIN_POINTS_CURVEFIT) is fitted at every decision.
    book, old = ModelBook("curvefit", refit_every=4), _job(40)
    young = _job(6, "young")
    expected_old = [(40, 40), (45, 40), (50, 40), (56, 40), (57, 57), (58, 57)]
    expected_young = [(6, 6), (7, 7), (8, 8), (9, 9), (10, 10), (12, 10)]
    seen_old, seen_young = [], []
    for (n_old, _), (n_young, _) in zip(expected_old, expected_young, strict=True):
        _grow(old, n_old)
        _grow(young, n_young)
        a, b = book.refresh([old, young])
        seen_old.append((int(a.k_now), int(a.fitted_at)))
        seen_young.append((int(b.k_now), int(b.fitted_at)))
    # Decisions 1-3: due (5, 10, 16 new of an interval of 5) but not gathering: re-anchored.
    # Decision 4 gathers: refitted at 57 (the young one, now 10 long, too). Decision 5: the
    # old fit has 1 new of 7, the other 2 of 1 but waits for decision 8.
    assert seen_old == expected_old
    assert seen_young == expected_young


def test_every_decision_refits_what_is_due_when_refit_every_is_one():
    book, state = ModelBook("curvefit", refit_every=1), _job(40)
    for n in (45, 51, 57):
        _grow(state, n)
        (model,) = book.refresh([state])
        assert model.fitted_at == n


def test_refit_every_must_be_positive():
    with pytest.raises(ValueError, match="refit_every"):
        ModelBook("curvefit", refit_every=0)
