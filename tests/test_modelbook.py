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


def test_reported_fits_follow_the_decision_path_without_gathering():
    # A job thread fitting at each reported loss must produce exactly the models a decision
    # refitting every due job at once (refit_every=1) produces for the same histories.
    on_report = ModelBook("curvefit", fit_on_report=True)
    in_decision = ModelBook("curvefit", refit_every=1)
    reported, decided = _job(0), _job(0)
    for n in range(1, 60):
        _grow(reported, n)
        _grow(decided, n)
        on_report.fit_reported(reported)
        (mine,) = on_report.refresh([reported])
        (theirs,) = in_decision.refresh([decided])
        assert (mine.family, mine.k_now, mine.fitted_at) == (
            theirs.family,
            theirs.k_now,
            theirs.fitted_at,
        )
        np.testing.assert_array_equal(mine.params, theirs.params)


def test_a_live_decision_reanchors_instead_of_fitting_a_reported_loss():
    # The job's thread has not fitted its latest loss yet: the decision must not fit it
    # (that is the thread's job) but re-anchor the last fit at the new loss.
    book, state = ModelBook("curvefit", fit_on_report=True), _job(6)
    book.fit_reported(state)
    _grow(state, 7)
    (model,) = book.refresh([state])
    assert (model.k_now, model.fitted_at) == (7, 6)
    assert model.loss_now == state.history.last
    book.fit_reported(state)
    (model,) = book.refresh([state])
    assert (model.k_now, model.fitted_at) == (7, 7)


def test_a_late_stale_install_does_not_replace_a_newer_fit():
    book, state = ModelBook("curvefit", fit_on_report=True), _job(12)
    book.fit_reported(state)
    (fresh,) = book.refresh([state])
    stale = fresh.rebase(11, float(CURVE[10]))
    assert book._install("j", stale) is fresh
    (kept,) = book.refresh([state])
    assert kept is fresh


def test_without_fit_on_report_a_reported_loss_is_left_to_the_decision():
    book, state = ModelBook("curvefit"), _job(6)
    book.fit_reported(state)
    assert book._models == {}
