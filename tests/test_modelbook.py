"""The loop's model book: which decisions refit a job's curve and which only re-anchor it."""

import numpy as np
import pytest

from slaq.jobstate import JobState
from slaq.loop import ModelBook
from slaq.predict import RuntimeModel
from slaq.workload import JobSpec

CURVE = 1.0 / (0.05 * np.arange(1, 200) + 1.0) + 0.1


def _job(n: int) -> JobState:
    state = JobState(
        JobSpec("j", "synthetic", "synthetic", 0.0, max_iter=500, tol=0.0), RuntimeModel()
    )
    _grow(state, n)
    return state


def _grow(state: JobState, to: int) -> None:
    for loss in CURVE[len(state.history) : to]:
        state.history.append(float(loss))


def test_due_refits_wait_for_the_gathering_decision_but_overdue_ones_do_not():
    # Hand-computed schedule: a fit at n is due after max(1, n // 8) more losses and overdue
    # after twice that; with refit_every=4 decisions 0, 4, 8, ... gather the due ones.
    book, state = ModelBook("curvefit", refit_every=4), _job(40)
    expected = [(40, 40), (45, 40), (50, 50), (56, 50), (57, 57), (58, 57)]
    seen = []
    for n, _ in expected:
        _grow(state, n)
        (model,) = book.refresh([state])
        seen.append((int(model.k_now), int(model.fitted_at)))
    # Decision 1: due (5 new of an interval of 5) but not gathering: re-anchored at 45.
    # Decision 2: overdue (10 new): refitted. Decision 3: due (6 of 6), re-anchored.
    # Decision 4 gathers: refitted at 57. Decision 5: 1 new of 7, re-anchored.
    assert seen == expected


def test_every_decision_refits_what_is_due_when_refit_every_is_one():
    book, state = ModelBook("curvefit", refit_every=1), _job(40)
    for n in (45, 51, 57):
        _grow(state, n)
        (model,) = book.refresh([state])
        assert model.fitted_at == n


def test_refit_every_must_be_positive():
    with pytest.raises(ValueError, match="refit_every"):
        ModelBook("curvefit", refit_every=0)
