"""Part 3 of the homework: convolutional networks (questions 3.1, 3.2 and 3.3).

The homework's filter applied under both conventions, the size of a CNN against its fully
connected counterpart (:mod:`kernels.arch`), and receptive fields, analytic and measured.
"""

from __future__ import annotations

import re

import numpy as np

from kernels import arch as A
from kernels import conv as C

from ._common import DEFAULT_SPEC, _f


# ============================================================================ 3.1

#: The homework's 5x5 input I of question 3.1, as read from the seed text (see the report).
HW_I = np.array([[0, 0, 0, 0, 0],
                 [0, 0, 1, 1, 1],
                 [1, 1, 1, 1, 0],
                 [0, 1, 1, 1, 0],
                 [0, 0, 1, 0, 0]], dtype=np.float64)
#: The filter J: rows (-1,-1,-1), (0,0,0), (1,1,1).
HW_J = np.array([[-1, -1, -1],
                 [0, 0, 0],
                 [1, 1, 1]], dtype=np.float64)


def q3_1():
    """``I * J`` with zero 'same' padding under both conventions (question 3.1), and what ``J``
    detects: its response to a horizontal and to a vertical step edge (8x8, 'valid' so that the
    padding adds no edges of its own)."""
    conv = C.convolve2d(HW_I, HW_J, padding="same")
    corr = C.correlate2d(HW_I, HW_J, padding="same")
    step_h = np.zeros((8, 8))
    step_h[4:, :] = 1.0   # dark above, bright below: a horizontal edge
    step_v = np.zeros((8, 8))
    step_v[:, 4:] = 1.0   # dark left, bright right: a vertical edge
    resp = {}
    for name, img in (("horizontal", step_h), ("vertical", step_v)):
        r_conv = C.convolve2d(img, HW_J, padding="valid")
        r_corr = C.correlate2d(img, HW_J, padding="valid")
        resp[name] = dict(max_abs_convolve=_f(np.abs(r_conv).max()), max_abs_correlate=_f(np.abs(r_corr).max()),
                          convolve_sum=_f(r_conv.sum()), correlate_sum=_f(r_corr.sum()))
    return dict(I=HW_I.tolist(), J=HW_J.tolist(), convolve=conv.tolist(), correlate=corr.tolist(),
                sign_flip=bool(np.array_equal(conv, -corr)), edges=resp)


# ============================================================================ 3.2 / 3.3


def _row(r):
    """An ``analyze`` row as plain data."""
    out = {}
    for key in ("name", "kind", "out_shape", "neurons", "params", "rf", "jump", "start"):
        v = getattr(r, key)
        if isinstance(v, (tuple, list, np.ndarray)):
            v = [x.item() if hasattr(x, "item") else x for x in v]
        elif hasattr(v, "item"):
            v = v.item()
        out[key] = v
    return out


def _is_input(row):
    return row["kind"] == "input"


def q3_2(spec=DEFAULT_SPEC):
    """Neurons and trainable parameters of the CNN ``spec`` and of its fully connected
    counterpart (question 3.2), from :func:`kernels.arch.analyze` and
    :func:`kernels.arch.to_dense`. Neurons are counted over every layer's outputs; the input
    layer is reported apart (whether to count it is a convention)."""
    out = {}
    for key, layers in (("cnn", A.parse(spec)), ("fcnn", None)):
        if layers is None:
            layers = A.to_dense(A.parse(spec))
        analyzed = A.analyze(layers)
        rows = [_row(r) for r in analyzed]
        body = A.totals(analyzed)
        full = A.totals(analyzed, include_input=True)
        out[key] = dict(rows=rows, neurons=int(body["neurons"]), neurons_with_input=int(full["neurons"]),
                        input_neurons=int(full["neurons"] - body["neurons"]), params=int(body["params"]))
    out["spec"] = spec
    out["param_ratio"] = out["fcnn"]["params"] / max(1, out["cnn"]["params"])
    return out


def _respec(spec, k):
    """``spec`` with every conv's kernel size set to ``k`` (its other suffixes kept)."""
    return " ".join(re.sub(r"^conv\d+", f"conv{k}", tok) for tok in spec.split())


def _upto_second_conv(spec):
    """The tokens of ``spec`` up to and including its second conv layer."""
    toks, n = [], 0
    for tok in spec.split():
        toks.append(tok)
        if tok.startswith("conv"):
            n += 1
            if n == 2:
                break
    if n < 2:
        raise ValueError(f"spec {spec!r} has fewer than two conv layers, so no 'second conv layer'")
    return " ".join(toks)


def _empirical_rf(layers):
    """The measured field of the centre unit of the last layer: its (height, width) extent and
    whether the image border clipped it (then the extent would only be a lower bound)."""
    res = A.empirical_receptive_field(layers)
    return [int(v) for v in res.rf], bool(any(res.clipped))


def q3_3_specs(spec=DEFAULT_SPEC, kernel=5):
    """The specs question 3.3 analyses, without analysing them: ``(base, orig, variants, note)``.

    ``base`` is ``spec`` up to its second conv with every conv ``kernel x kernel`` (the question
    as asked), ``orig`` the same prefix of ``spec`` as given, ``variants`` a list of ``(label,
    spec)`` starting with ``base``, each changing one thing (stride, dilation, pooling, depth);
    ``note`` says why the homework's spec replaced ``spec`` when it has fewer than two convs (else
    None). :func:`q3_3` analyses these; the command line checks that they fit before any work."""
    note = None
    if sum(tok.startswith("conv") for tok in spec.split()) < 2:
        note = f"the spec {spec!r} has fewer than two conv layers, so 3.3 analyses the homework's {DEFAULT_SPEC!r}"
        spec = DEFAULT_SPEC
    base = _upto_second_conv(_respec(spec, kernel))
    orig = _upto_second_conv(spec)
    toks = base.split()
    conv_idx = [i for i, tok in enumerate(toks) if tok.startswith("conv")]
    pool_idx = [i for i, tok in enumerate(toks) if tok.startswith("pool")]
    k = kernel
    variants = [("as asked: every conv 5x5" if k == 5 else f"as asked: every conv {k}x{k}", base)]
    v = list(toks)
    v[conv_idx[0]] = f"conv{k}s2p{(k - 1) // 2}"
    variants.append(("stride 2 in the first conv", " ".join(v)))
    v = [f"conv{k}d2" if tok.startswith("conv") else tok for tok in toks]
    variants.append(("dilation 2 in both convs", " ".join(v)))
    if pool_idx:
        v = [tok for i, tok in enumerate(toks) if i not in pool_idx]
        variants.append(("no pooling", " ".join(v)))
        v = [("pool3" if i in pool_idx else tok) for i, tok in enumerate(toks)]
        variants.append(("3x3 pooling, stride 3", " ".join(v)))
    v = toks[:conv_idx[1]] + [f"conv{k}"] + toks[conv_idx[1]:]
    variants.append(("depth: one more conv before the second", " ".join(v)))
    return base, orig, variants, note


def q3_3(spec=DEFAULT_SPEC, kernel=5):
    """Receptive field after the second conv layer when every conv of ``spec`` uses
    ``kernel x kernel`` filters (question 3.3), analytic (:func:`kernels.arch.analyze`, the
    recurrence ``r <- r + (k_eff - 1) j``, ``j <- j s``) and empirical (a unit gradient
    backpropagated through the conv and pool backward kernels). Then variants that change one
    thing each -- stride, dilation, pooling, depth -- with their receptive fields
    (:func:`q3_3_specs` builds them)."""
    base, orig, variants, note = q3_3_specs(spec, kernel)
    rows = []
    for label, s in variants:
        layers = A.parse(s)
        last = _row(A.analyze(layers)[-1])
        emp, clipped = _empirical_rf(layers)
        rows.append(dict(label=label, spec=s, rf=last["rf"], jump=last["jump"], empirical=emp, clipped=clipped))
    orig_rows = [_row(r) for r in A.analyze(A.parse(orig))]
    return dict(spec=base, kernel=kernel, rf=rows[0]["rf"], empirical=rows[0]["empirical"], variants=rows, note=note,
                text_check=dict(spec=orig, rfs=[r["rf"] for r in orig_rows if not _is_input(r)],
                                names=[r["name"] for r in orig_rows if not _is_input(r)]))
