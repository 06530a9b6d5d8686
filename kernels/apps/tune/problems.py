"""The two tuning problems of the head-to-head (issue 15), with their fixed splits.

* ``diabetes``: scikit-learn's bundled diabetes set (442 x 10), split 60/20/20 into train,
  validation and test by a permutation from ``seed``; features and target standardised with the
  training split's mean and standard deviation.
* ``synthetic``: a d > n problem, 200 x 500 Gaussian features, a target from a sparse-ish
  planted weight vector plus noise, split 60/20/20 the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Problem:
    name: str
    X: np.ndarray
    t: np.ndarray
    X_val: np.ndarray
    t_val: np.ndarray
    X_test: np.ndarray
    t_test: np.ndarray

    @property
    def shape(self):
        n = self.X.shape[0] + self.X_val.shape[0] + self.X_test.shape[0]
        return n, self.X.shape[1]


def _split(name, X, t, seed):
    n = X.shape[0]
    perm = np.random.default_rng(seed).permutation(n)
    a, b = int(0.6 * n), int(0.8 * n)
    tr, va, te = perm[:a], perm[a:b], perm[b:]
    mu, sd = X[tr].mean(axis=0), X[tr].std(axis=0)
    sd[sd == 0] = 1.0
    tm, ts = t[tr].mean(), t[tr].std()
    Z = (X - mu) / sd
    y = (t - tm) / ts
    c = np.ascontiguousarray
    return Problem(name, c(Z[tr]), c(y[tr]), c(Z[va]), c(y[va]), c(Z[te]), c(y[te]))


def diabetes(seed=0) -> Problem:
    from sklearn.datasets import load_diabetes

    X, t = load_diabetes(return_X_y=True)
    return _split("diabetes", X.astype(np.float64), t.astype(np.float64), seed)


def synthetic(seed=0, n=200, d=500) -> Problem:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    w = rng.standard_normal(d) * (rng.random(d) < 0.1)
    t = X @ w + 2.0 * rng.standard_normal(n)
    return _split("synthetic", X, t, seed)


PROBLEMS = {"diabetes": diabetes, "synthetic": synthetic}
