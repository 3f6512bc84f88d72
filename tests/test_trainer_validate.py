"""validate_job: bad data and bad hyper-parameters fail with the job and the field named."""

import numpy as np
import pytest

from slaq.algorithms import validate_job


def _xy(n=40, d=3):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, d)), rng.integers(0, 2, n)


def test_a_good_job_passes():
    X, y = _xy()
    validate_job("j1", "logreg", {"reg": 1e-3, "rows": 30}, X, y, 2)
    validate_job("j2", "kmeans", {"k": 5}, X, None, 5)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_or_inf_in_x_names_job_row_and_column(value):
    X, y = _xy()
    X[7, 2] = value
    with pytest.raises(ValueError, match=r"job 'bad'.*data X.*row 7, column 2"):
        validate_job("bad", "svm", {"reg": 1e-3}, X, y, 2)


def test_nan_in_regression_target():
    X, _ = _xy()
    y = X[:, 0].copy()
    y[3] = np.nan
    with pytest.raises(ValueError, match=r"job 'lr'.*data y.*row 3"):
        validate_job("lr", "linreg", {}, X, y, 1)


@pytest.mark.parametrize("algorithm", ["logreg", "svm", "mlp"])
def test_single_class(algorithm):
    X, _ = _xy()
    with pytest.raises(ValueError, match=rf"job 'one'.*single class.*{algorithm}"):
        validate_job("one", algorithm, {}, X, np.ones(40, int), 2)


def test_more_clusters_than_rows():
    X, _ = _xy(n=10)
    with pytest.raises(ValueError, match=r"job 'km'.*params.k=11.*10 data rows"):
        validate_job("km", "kmeans", {"k": 11}, X, None, 11)
    with pytest.raises(ValueError, match=r"job 'km'.*params.k=8.*params.rows=5"):
        validate_job("km", "gmm", {"k": 8, "rows": 5}, _xy(n=40)[0], None, 8)


@pytest.mark.parametrize(
    "algorithm,field", [("svm", "reg"), ("logreg", "reg"), ("logreg_sgd", "lr"), ("svm", "lr")]
)
def test_negative_reg_or_learning_rate(algorithm, field):
    X, y = _xy()
    with pytest.raises(ValueError, match=rf"job 'neg'.*params.{field} must be >= 0"):
        validate_job("neg", algorithm, {field: -0.5}, X, y, 2)


def test_unknown_parameter_names_the_job():
    X, y = _xy()
    with pytest.raises(ValueError, match=r"job 'u'.*unknown parameter.*'step'"):
        validate_job("u", "svm", {"step": 1}, X, y, 2)
