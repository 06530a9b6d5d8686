"""The real data: scikit-learn's bundled ``load_digits`` (1,797 8x8 handwritten digits shipped
inside the package, nothing downloaded), split 80/20, stratified, from a seed.

Pixels (0..16) are scaled to [0, 1]; images are ``(N, 1, 8, 8)``, or zero-padded to
``(N, 1, 32, 32)`` (centred) for the homework's 32x32 network.
"""

from __future__ import annotations

import numpy as np

__all__ = ["digits_split"]


def digits_split(seed=0, *, size=8, dtype="float32", test_fraction=0.2):
    """``(X_train, y_train, X_test, y_test)``: the digits, a stratified split by ``seed``.

    ``size`` 8 keeps the images as they are; a larger ``size`` pads them with zeros, centred.
    Labels are int64 in [0, 10).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X = (digits.images / 16.0).astype(dtype)[:, None]
    if size != 8:
        lo = (size - 8) // 2
        Xp = np.zeros((X.shape[0], 1, size, size), dtype=dtype)
        Xp[:, :, lo: lo + 8, lo: lo + 8] = X
        X = Xp
    y = digits.target.astype(np.int64)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=test_fraction, stratify=y, random_state=seed)
    return (np.ascontiguousarray(X_train), y_train, np.ascontiguousarray(X_test), y_test)
