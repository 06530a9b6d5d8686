"""``method="exact"``: the closed form; time independent of T.

With ``X = U diag(sigma) V^T`` (from ``eigh`` of the smaller Gram matrix, ``X X^T`` or
``X^T X``, formed by a compiled kernel: several times cheaper than an SVD), ``H`` has
eigenvalues ``mu_i = (2/n) sigma_i^2 + 2 l2`` on the columns of ``V`` and ``2 l2`` on their
orthogonal complement (where ``b`` has no component: with ``n < d`` that whole subspace just
shrinks by ``(1 - 2 lr l2)^T``). Per eigen-direction, with ``m = 1 - lr mu``::

    z_T = m^T z_0 + G beta,          G = lr sum_{k<T} m^k = (1 - m^T) / mu
    dz_T/dlr = T m^(T-1) (beta - mu z_0)
    dz_T/dl2 = -2 lr T m^(T-1) z_0 - 2 lr^2 S_1 beta,   S_1 = sum_{k<T} k m^(k-1)

(``l2`` moves both the eigenvalues and the fixed point ``w* = H^-1 b``; these are the exact
derivatives of the closed form), evaluated without cancellation (``expm1``/``log1p``, and a
binomial series for ``S_1`` when ``T lr mu`` is small). ``bytes_stored`` is the size of the
eigen-factors held: ``U`` (n, r) when ``n <= d``, else ``V`` (d, r), and ``sigma`` (r,).
NumPy/LAPACK in the wrapper; O(n d min(n, d)) whatever T.
"""

from __future__ import annotations

import numpy as np

from ._problem import HypergradResult, _noise
from .spectrum import _diverged, _eigh_serial, _gram_kernel


def _powers(x, T):
    """For ``m = 1 - x`` (elementwise, ``x = lr mu >= 0``): ``m^T``, ``1 - m^T`` and
    ``m^(T-1)``, via ``log1p``/``expm1`` where ``0 <= x < 1`` (no cancellation when ``x`` is
    tiny), by plain powers where ``m <= 0``."""
    x = np.asarray(x, dtype=np.float64)
    mT = np.empty_like(x)
    one_minus = np.empty_like(x)
    mT1 = np.empty_like(x)
    small = x < 1.0
    with np.errstate(over="ignore", invalid="ignore"):
        lg = np.log1p(-x[small])
        mT[small] = np.exp(T * lg)
        one_minus[small] = -np.expm1(T * lg)
        mT1[small] = np.exp((T - 1) * lg)
        m = 1.0 - x[~small]
        mT[~small] = np.power(m, T)
        one_minus[~small] = 1.0 - mT[~small]
        mT1[~small] = np.power(m, T - 1)
    return mT, one_minus, mT1


def _s1(x, T, mT1, one_minus):
    """``S_1 = sum_{k<T} k m^(k-1)`` with ``m = 1 - x``: ``((1 - m^T) - T x m^(T-1)) / x^2``,
    whose numerator is P(Binomial(T, x) >= 2) and cancels when ``T x`` is small; there it is
    summed as the series ``sum_{j>=2} C(T, j) x^(j-2) m^(T-j)`` instead."""
    out = np.empty_like(x)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        direct = T * x > 1.0
        xd = x[direct]
        out[direct] = (one_minus[direct] - T * xd * mT1[direct]) / (xd * xd)
        xs = x[~direct]
        if xs.size:
            m = 1.0 - xs
            # term_2 = C(T,2) m^(T-2); term_{j+1} = term_j (T-j)/(j+1) x/m
            term = 0.5 * T * (T - 1) * np.exp((T - 2) * np.log1p(-xs)) if T >= 2 else np.zeros_like(xs)
            total = term.copy()
            ratio = xs / m
            for j in range(2, min(T, 200)):
                term = term * ((T - j) / (j + 1.0)) * ratio
                total += term
                if np.all(term <= 1e-17 * total):
                    break
            out[~direct] = total
    return out


class _Eigen:
    """The eigen-directions of ``X^T X`` with nonzero ``sigma``, from ``eigh`` of the smaller
    Gram matrix: ``X X^T = U diag(sigma^2) U^T`` when ``n <= d`` (then ``V = X^T U diag(1/sigma)``
    is never formed: ``V^T y = (U^T X y) / sigma`` and ``V z = X^T U (z / sigma)`` are two
    matrix-vector products), else ``X^T X = V diag(sigma^2) V^T``. Directions with
    ``sigma^2 <= min(n, d) eps sigma_max^2`` are numerically null and are left to the
    complement (their ``mu`` is ``2 l2`` to within rounding)."""

    def __init__(self, X):
        n, d = X.shape
        m = min(n, d)
        G = np.empty((m, m))
        _gram_kernel(X, G)
        lam, E = _eigh_serial(G)
        keep = lam > m * np.finfo(np.float64).eps * max(float(lam[-1]), 0.0)
        self.X = X
        self.sig = np.sqrt(lam[keep])
        self.E = np.ascontiguousarray(E[:, keep])  # U (n, r) or V (d, r)
        self.wide = n <= d
        self.nbytes = self.E.nbytes + self.sig.nbytes

    def project(self, y):
        """``V^T y`` for ``y`` in R^d."""
        if self.wide:
            return (self.E.T @ (self.X @ y)) / self.sig
        return self.E.T @ y

    def lift(self, z):
        """``V z`` in R^d."""
        if self.wide:
            return self.X.T @ (self.E @ (z / self.sig))
        return self.E @ z


def _exact_components(X, t, w0):
    eig = _Eigen(X)
    n = X.shape[0]
    beta = (2.0 / n) * eig.project(X.T @ t)  # V^T b
    z0 = eig.project(w0)
    w0_perp = w0 - eig.lift(z0)
    return eig, beta, z0, w0_perp


def _exact_state(mu, z0, beta, w0_perp, lr, l2, T):
    """``z_T`` (eigen-coordinates), ``w_perp_T`` and the quantities the derivatives need."""
    x = lr * mu
    mT, one_minus, mT1 = _powers(x, T)
    with np.errstate(divide="ignore", invalid="ignore"):
        G = np.where(x > 0, lr * one_minus / np.where(x > 0, x, 1.0), lr * T)
    zT = mT * z0 + G * beta
    xc = np.array([2.0 * lr * l2])
    mcT, _, mcT1 = _powers(xc, T)
    return x, mT, one_minus, mT1, G, zT, w0_perp * mcT[0], mcT1[0]


def _exact_diverged_at(mu, z0, beta, w0_perp, lr, l2, T, loss0, noise):
    """First ``k`` in ``[1, T]`` with ``L~(w_k) > 2 L~(w_0) + noise``, or -1. ``L~(w_k) - L* =
    (1/2) sum_i mu_i m_i^(2k) e_i^2`` is convex in ``k``, so the set of good ``k`` is an
    interval starting at 0 and a bisection finds its end."""
    mus = np.concatenate([mu, [2.0 * l2]])
    with np.errstate(divide="ignore", invalid="ignore"):
        e0 = np.where(mu > 0, z0 - beta / np.where(mu > 0, mu, 1.0), 0.0)
    coeffs = np.concatenate([0.5 * mu * e0 * e0, [0.5 * 2.0 * l2 * float(w0_perp @ w0_perp)]])
    ms = np.abs(1.0 - lr * mus)
    keep = (coeffs > 0) & (ms > 0)
    coeffs, ms = coeffs[keep], ms[keep]
    if coeffs.size == 0 or np.all(ms <= 1.0):
        return -1
    D0 = float(coeffs.sum())
    thr = loss0 + D0 + noise  # L_k > 2 L_0 + noise  <=>  D_k > L_0 + D_0 + noise (L* = L_0 - D_0)

    def bad(k):
        with np.errstate(over="ignore"):
            return float(np.sum(coeffs * np.exp(2.0 * k * np.log(ms)))) > thr

    if not bad(T):
        return -1
    lo, hi = 0, T  # bad(lo) false, bad(hi) true
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if bad(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _exact(X, t, w0, X_val, t_val, lr, l2, T, l2_obj=None):
    """The closed form; ``l2_obj`` (default ``l2``) is the penalty of the default objective
    ``L~(w_T)`` when it differs from the one that drives the descent (gradient descent with
    decoupled weight decay is descent on ``l2 + weight_decay / (2 lr)``, question 2.3.2)."""
    l2_obj = l2 if l2_obj is None else l2_obj
    n, d = X.shape
    eig, beta, z0, w0_perp = _exact_components(X, t, w0)
    mu = (2.0 / n) * eig.sig * eig.sig + 2.0 * l2
    nbytes = eig.nbytes
    r0 = X @ w0 - t
    loss0 = float(r0 @ r0) / n + l2 * float(w0 @ w0)
    k = _exact_diverged_at(mu, z0, beta, w0_perp, lr, l2, T, loss0, _noise(X, t, w0, l2))
    if k >= 0:
        _, _, _, _, _, zk, wpk, _ = _exact_state(mu, z0, beta, w0_perp, lr, l2, k)
        return _diverged(X, l2, lr, T, "exact", k, eig.lift(zk) + wpk, nbytes)
    x, mT, one_minus, mT1, G, zT, wpT, mcT1 = _exact_state(mu, z0, beta, w0_perp, lr, l2, T)
    w = eig.lift(zT) + wpT
    # d z_T / d lr and d z_T / d l2 per eigen-direction; the complement shrinks by m_c^T.
    dz_dlr = T * mT1 * (beta - mu * z0)
    S1 = _s1(x, T, mT1, one_minus)
    dz_dl2 = -2.0 * lr * T * mT1 * z0 - 2.0 * lr * lr * S1 * beta
    dwp_dlr = T * mcT1 * (-2.0 * l2) * w0_perp
    dwp_dl2 = T * mcT1 * (-2.0 * lr) * w0_perp
    if X_val is None:
        resid = X @ w - t
        obj = float(resid @ resid) / n + l2_obj * float(w @ w)
        a_z = mu * zT - beta - 2.0 * (l2 - l2_obj) * zT  # the gradient of L~ at w_T, in eigen-coordinates
        a_perp = 2.0 * l2_obj * wpT
        direct = float(w @ w)
    else:
        r = X_val @ w - t_val
        nv = X_val.shape[0]
        obj = float(r @ r) / nv
        a = (2.0 / nv) * (X_val.T @ r)
        a_z = eig.project(a)
        a_perp = a - eig.lift(a_z)
        direct = 0.0
    d_lr = float(a_z @ dz_dlr) + float(a_perp @ dwp_dlr)
    d_l2 = float(a_z @ dz_dl2) + float(a_perp @ dwp_dl2) + direct
    return HypergradResult(loss=obj, d_lr=d_lr, d_l2=d_l2, w=w, bytes_stored=nbytes, method="exact", steps=T)
