"""kernels.nn: networks from an arch spec, checked three ways.

* against torch.autograd: forward logits, loss and every parameter gradient, for every layer
  kind, stride, padding (symmetric, asymmetric 'same', 'valid'), dilation, with and without
  bias, in float32 and float64, on fixed specs and on random ones (hypothesis);
* against central finite differences (float64) on a random direction;
* against a torch.optim training loop on the same weights and batches: 100 steps of SGD,
  RMSProp and Adam, with and without l2 and weight decay, in float64;
and on real data: the digits, >= 97% test accuracy in float32 within 30 epochs.
"""

from __future__ import annotations


import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import kernels
import kernels.nn.layers as nn_layers
import kernels.nn.model as nn_model
from kernels import arch, nn

torch = pytest.importorskip("torch")

SPECS = [
    "in8x8x1 conv3c16 relu pool2 conv3c32 relu pool2 fc10",              # the network
    "in9x9x2 conv3s2p1c3 relu conv2c4 relu pool2s1 fc5",                 # stride, int padding, even 'same'
    "in10x10x1 conv3d2validc3nobias relu pool3s2 fc6 relu fc4",          # dilation, valid, nobias, overlap pool
    "in12x12x3 conv4s2samec2 relu pool2 fc3",                            # asymmetric 'same' at stride 2
    "in6x6x1 relu conv1c2 fc3",                                          # relu first (on the input), 1x1 conv
]


def torch_net(model):
    """The torch.nn.Sequential computing what ``model`` computes, with its current weights."""
    from kernels.apps.train.peer import torch_sequential

    return torch_sequential(model)


def torch_loss_and_grad(net, x, y):
    net.zero_grad()
    loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y))
    loss.backward()
    return loss.item(), [p.grad.numpy().copy() for p in net.parameters()]


def _data(model, n, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n,) + model.input_shape).astype(model.dtype)
    y = rng.integers(0, model.classes, n)
    return x, y


#: the conv layers' two implementations: the direct kernels of kernels.conv, and BLAS products
#: over im2col columns (build picks per layer; the tests force each); and the whole pass as one
#: compiled call (kernels.nn.program, which small batches take)
PATHS = {"direct": (False, False, False), "gemm": (True, True, True), "mixed": (False, True, True),
         "compiled": "compiled"}


def _force_paths(paths):
    """Force the pass ``paths`` names (None: back to the automatic choice)."""
    compiled = paths == "compiled"
    nn_layers.FORCE_PATHS = None if paths is None or compiled else PATHS[paths]
    nn_model.FORCE_COMPILED = None if paths is None else compiled


@pytest.fixture(params=sorted(PATHS))
def conv_paths(request):
    _force_paths(request.param)
    yield request.param
    _force_paths(None)


TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=2e-4, atol=2e-5)}


# ------------------------------------------------------------------------------------- build


def test_params_have_torch_layouts_and_default_init_bounds():
    model = nn.build("in8x8x1 conv3c16 relu pool2 conv3c32 relu pool2 fc10", seed=0, dtype="float32")
    assert [p.shape for p in model.params] == [(16, 1, 3, 3), (16,), (32, 16, 3, 3), (32,), (10, 128), (10,)]
    assert all(p.dtype == np.float32 for p in model.params)
    for p, fan_in in zip(model.params, (9, 9, 144, 144, 128, 128)):
        bound = 1 / np.sqrt(fan_in)
        assert np.abs(p).max() <= bound and np.abs(p).max() > 0.8 * bound  # uniform over the whole range
    assert model.classes == 10 and model.input_shape == (1, 8, 8)
    assert sum(p.size for p in model.params) == arch.totals(arch.analyze(model.spec))["params"]


def test_init_is_reproducible_from_the_seed_and_params_are_the_model():
    a, b, c = (nn.build("in8x8x1 conv3c4 relu fc3", seed=s, dtype="float64") for s in (0, 0, 1))
    assert all(np.array_equal(p, q) for p, q in zip(a.params, b.params))
    assert not np.array_equal(a.params[0], c.params[0])
    x, _ = _data(a, 2)
    a.params[0][...] = 0.0  # the params are views of the model's weights
    a.params[1][...] = 0.0
    assert not np.allclose(a.forward(x), b.forward(x))


# ------------------------------------------------------------------- against torch.autograd


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("spec", SPECS)
def test_forward_loss_and_grads_match_torch_autograd(spec, dtype, conv_paths):
    model = nn.build(spec, seed=3, dtype=dtype)
    x, y = _data(model, 5)
    net = torch_net(model)
    tol = TOL[model.dtype.type]
    logits = model.forward(x)
    assert logits.dtype == model.dtype and logits.shape == (5, model.classes)
    np.testing.assert_allclose(logits, net(torch.from_numpy(x)).detach().numpy(), **tol)
    x_before = x.copy()
    loss, grads = model.loss_and_grad(x, y)
    assert np.array_equal(x, x_before)  # the input is never modified (a relu first works on a copy)
    tloss, tgrads = torch_loss_and_grad(net, x, y)
    assert loss == pytest.approx(tloss, rel=tol["rtol"])
    assert len(grads) == len(model.params)
    for g, tg, p in zip(grads, tgrads, model.params):
        assert g.shape == p.shape and g.dtype == model.dtype
        np.testing.assert_allclose(g, tg, rtol=tol["rtol"], atol=tol["atol"] * max(1.0, np.abs(tg).max()))


@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 7), w=st.integers(1, 7), k=st.integers(1, 3),
       s=st.integers(1, 3), d=st.integers(1, 2), pads=st.tuples(*[st.integers(0, 2)] * 4),
       dtype=st.sampled_from(["float32", "float64"]), rows=st.booleans(), seed=st.integers(0, 2**16))
def test_im2col_matches_numpy_and_col2im_is_its_adjoint(n, c, h, w, k, s, d, pads, dtype, rows, seed):
    """The columns (either layout) against NumPy's zero-padded copy and slicing, and
    <im2col(x), G> == <x, col2im(G)> for any G: col2im is the transpose of the linear map
    im2col, padding cut."""
    from kernels.nn.im2col import _out_hw, col2im, im2col

    pt, pb, pl, pr = pads
    Ho, Wo = _out_hw(h, w, (k, k), (s, s), (d, d), pads)
    assume(Ho >= 1 and Wo >= 1)  # else the filter does not fit: the layers never ask for such columns
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    shape = (n * Ho * Wo, k * k * c) if rows else (c * k * k, n * Ho * Wo)
    cols = im2col(x, np.empty(shape, dtype=dtype), (k, k), (s, s), (d, d), pads, rows)
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    want = np.empty((n, Ho, Wo, c, k, k), dtype=dtype)
    for i in range(k):
        for j in range(k):
            want[..., i, j] = xp[:, :, i * d: i * d + s * (Ho - 1) + 1: s, j * d: j * d + s * (Wo - 1) + 1: s].transpose(0, 2, 3, 1)
    if rows:  # one row per pixel, its patch ordered (i, j, c)
        want = want.transpose(0, 1, 2, 4, 5, 3).reshape(n * Ho * Wo, k * k * c)
    else:  # one column per pixel, its patch ordered (c, i, j)
        want = want.reshape(n * Ho * Wo, c * k * k).T
    assert np.array_equal(cols, want)
    G = rng.standard_normal(cols.shape).astype(dtype)
    gx = col2im(G, x.shape, (k, k), (s, s), (d, d), pads, dtype, rows)
    assert gx.shape == x.shape and gx.dtype == x.dtype
    lhs, rhs = np.vdot(cols.astype(np.float64), G), np.vdot(x.astype(np.float64), gx)
    assert lhs == pytest.approx(rhs, rel=1e-5 if dtype == "float32" else 1e-12, abs=1e-4)


@given(n=st.integers(1, 300), dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2**16))
def test_relu_in_place_and_into_a_new_array_matches_torch_with_nan_and_zero(n, dtype, seed):
    """relu and its gradient, in place (their own kernels) and into a new array, against
    torch.relu and threshold_backward's rule: NaN propagates, the gradient at 0 is 0."""
    from kernels.nn.activations import relu_backward, relu_forward

    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n).astype(dtype)
    x[rng.random(n) < 0.2] = 0.0
    x[rng.random(n) < 0.05] = np.nan
    g = rng.standard_normal(n).astype(dtype)
    want_y = torch.relu(torch.from_numpy(x)).numpy()
    want_g = np.where(want_y > 0, g, 0).astype(dtype)
    y = relu_forward(x)
    assert y is not x and np.array_equal(y, want_y, equal_nan=True)
    y2 = x.copy()
    assert relu_forward(y2, y2) is y2 and np.array_equal(y2, want_y, equal_nan=True)
    assert np.array_equal(relu_backward(g, y), want_g)
    g2 = g.copy()
    assert relu_backward(g2, y, g2) is g2 and np.array_equal(g2, want_g)


@st.composite
def random_specs(draw):
    size = draw(st.integers(5, 12))
    tokens = [f"in{size}x{size}x{draw(st.integers(1, 3))}"]
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["conv", "conv", "pool", "relu"]))
        if kind == "conv":
            k = draw(st.integers(1, min(4, size)))
            s = draw(st.integers(1, 2))
            pad = draw(st.sampled_from(["", "valid", f"p{draw(st.integers(0, 1))}"]))  # "" is 'same'
            d = draw(st.sampled_from(["", "", "d2"]))
            tok = f"conv{k}s{s}{pad}{d}c{draw(st.integers(1, 4))}" + draw(st.sampled_from(["", "nobias"]))
        elif kind == "pool":
            k = draw(st.integers(1, 3))
            if k > size:
                continue
            tok = f"pool{k}s{draw(st.integers(1, k))}"
        else:
            tok = "relu"
        try:
            rows = arch.analyze(" ".join(tokens + [tok]))
        except ValueError:
            continue
        tokens.append(tok)
        size = rows[-1].out_shape[0]
    tokens.append(f"fc{draw(st.integers(2, 5))}")
    return " ".join(tokens)


@given(spec=random_specs(), n=st.integers(1, 4), seed=st.integers(0, 10), paths=st.sampled_from(sorted(PATHS)))
def test_random_networks_match_torch_autograd_float64(spec, n, seed, paths):
    _force_paths(paths)  # (no fixture: a function-scoped fixture under @given)
    try:
        model = nn.build(spec, seed=seed, dtype="float64")
        x, y = _data(model, n, seed)
        net = torch_net(model)
        loss, grads = model.loss_and_grad(x, y)
    finally:
        _force_paths(None)
    tloss, tgrads = torch_loss_and_grad(net, x, y)
    assert loss == pytest.approx(tloss, rel=1e-10)
    for g, tg in zip(grads, tgrads):
        np.testing.assert_allclose(g, tg, rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------- finite differences


@pytest.mark.parametrize("spec", ["in6x6x1 conv3c2 relu pool2 fc3",
                                  "in7x7x2 conv2s2p1c2 relu conv2validc2 fc3 relu fc2",
                                  "in9x9x1 conv3d2s2p2c2 relu fc2"])
def test_loss_and_grad_match_central_finite_differences(spec, conv_paths):
    model = nn.build(spec, seed=0, dtype="float64")
    x, y = _data(model, 3, seed=4)
    loss, grads = model.loss_and_grad(x, y)
    rng = np.random.default_rng(7)
    direction = [rng.standard_normal(p.shape) for p in model.params]
    base = [p.copy() for p in model.params]
    h = 1e-6

    def loss_at(t):
        for p, b, d in zip(model.params, base, direction):
            p[...] = b + t * d
        return model.loss_and_grad(x, y)[0]

    fd = (loss_at(h) - loss_at(-h)) / (2 * h)
    loss_at(0.0)
    analytic = sum(float((g * d).sum()) for g, d in zip(grads, direction))
    assert analytic == pytest.approx(fd, rel=1e-6, abs=1e-9)


# ------------------------------------------------------------------- training against torch.optim


def _torch_batches(n, batch_size, seed, steps):
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < steps:
        order = rng.permutation(n)
        out += [order[s: s + batch_size] for s in range(0, n, batch_size)]
    return out[:steps]


CASES = [
    ("sgd", dict(lr=0.1), {}),
    ("sgd", dict(lr=0.1, l2=0.01), {}),
    ("sgd", dict(lr=0.1, weight_decay=0.01), {}),
    ("rmsprop", dict(lr=1e-3, beta=0.95, eps=1e-6), {}),
    ("rmsprop", dict(lr=1e-3, weight_decay=1e-3), {}),
    ("rmsprop", dict(lr=1e-3, l2=1e-3), {}),
    ("adam", dict(lr=1e-3, beta1=0.8, beta2=0.99, eps=1e-7), {}),
    ("adam", dict(lr=1e-3, l2=0.005), {}),
    ("adam", dict(lr=1e-3, weight_decay=1e-3), {}),
    # torch's fused implementations (the benchmarks' peer): the same run, to rounding
    ("sgd", dict(lr=0.1, l2=0.01), {"fused": True}),
    ("adam", dict(lr=1e-3, l2=0.005), {"fused": True}),
    ("adam", dict(lr=1e-3, weight_decay=1e-3), {"fused": True}),
]


def _torch_optimizer(name, params, kw, torch_kw=None):
    from kernels.apps.train.peer import torch_optimizer

    return torch_optimizer(name, params, **kw, **(torch_kw or {}))


@pytest.mark.parametrize("name,kw,torch_kw", CASES,
                         ids=[f"{c[0]}-{'-'.join(c[1])}{'-fused' if c[2] else ''}" for c in CASES])
def test_100_steps_agree_with_torch_optim_float64(name, kw, torch_kw):
    model = nn.build("in8x8x1 conv3c4 relu pool2 conv3c6 relu fc10", seed=0, dtype="float64")
    X, y = _data(model, 40, seed=2)
    net = torch_net(model)
    params = list(net.parameters())
    opt = _torch_optimizer(name, params, kw, torch_kw)
    if torch_kw.get("fused"):
        assert opt.defaults["fused"]
    tl2 = kw.get("l2", 0.0)
    wd = kw.get("weight_decay", 0.0)
    assert not (wd and tl2)  # torch's coupled weight_decay would read the already decayed weight
    hist = nn.fit(model, X, y, name, epochs=10, batch_size=4, seed=5, progress=False, **kw)
    assert hist.steps == 100 and hist.loss.shape == (100,) and not hist.diverged
    tlosses = []
    for idx in _torch_batches(40, 4, 5, 100):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(X[idx])), torch.from_numpy(y[idx]))
        loss.backward()
        tlosses.append(loss.item())
        if wd and name != "adam":
            with torch.no_grad():
                for p in params:
                    p.mul_(1 - wd)
        opt.step()
    np.testing.assert_allclose(hist.loss, tlosses, rtol=1e-10)
    for p, tp in zip(model.params, params):
        np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-9, atol=1e-12)
    assert hist.loss[-10:].mean() < hist.loss[:10].mean()  # it learned something


# ------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn")
    from kernels.apps.train.data import digits_split

    return digits_split(seed=0, size=8, dtype="float32")


def test_digits_test_accuracy_at_least_97_percent_float32_within_30_epochs(digits):
    X, y, Xt, yt = digits
    model = nn.build("in8x8x1 conv3c16 relu pool2 conv3c32 relu pool2 fc10", seed=0, dtype="float32")
    hist = nn.fit(model, X, y, "adam", lr=3e-3, epochs=30, batch_size=32, seed=0, X_val=Xt, y_val=yt, progress=False)
    assert len(hist.val_acc) == len(hist.train_acc) == len(hist.seconds) == 30
    acc = nn.accuracy(model, Xt, yt)
    assert acc == hist.val_acc[-1]
    assert acc >= 0.97, acc
    assert np.all(np.isfinite(hist.loss)) and hist.loss[-20:].mean() < 0.2 < hist.loss[0]


# ------------------------------------------------------------------- bad input, divergence


@pytest.fixture(scope="module")
def small():
    model = nn.build("in8x8x1 conv3c4 relu pool2 fc10", seed=0, dtype="float64")
    x, y = _data(model, 6)
    return model, x, y


@pytest.mark.parametrize("spec,exc,match", [
    ("in4x4x1 conv3validc2 conv3validc2", ValueError, "larger than the padded input"),
    ("in4x4x1 pool2 pool2 pool2", ValueError, "pool size 2 is larger"),
    ("in8x8x1 conv3 bogus", ValueError, "bogus"),
    ("in8x8x1 relu pool2", ValueError, "no trainable layer"),
    (42, TypeError, "spec must be a string"),
    # sizes reach compiled code as int64
    ("in8x8x1 pool2s99999999999999999999999 fc2", ValueError, r"'pool2s9+': stride must be <= 9223372036854775807"),
    ("in8x8x1 conv3s9223372036854775808c2 fc2", ValueError, r"'conv3s9223372036854775808c2': stride must be <="),
    # a 2**63-1 wide filter: its element count must not wrap around int64 to 1
    ("in2x2x1 conv9223372036854775807p4611686018427387904s9223372036854775807 fc2", ValueError,
     "the parameters and gradients of .* needs"),
])
def test_build_rejects_bad_specs_naming_them(spec, exc, match):
    with pytest.raises(exc, match=match):
        nn.build(spec)


@pytest.mark.parametrize("kw,match", [(dict(dtype="float16"), "dtype"), (dict(seed=-1), "seed"),
                                      (dict(seed=1.5), "seed")])
def test_build_rejects_bad_dtype_and_seed(kw, match):
    with pytest.raises(ValueError, match=match):
        nn.build("in8x8x1 fc2", **kw)


def test_bad_inputs_are_named_before_any_training(small):
    model, x, y = small
    before = model.flat_params.copy()
    bad = [
        (dict(X=x[:, :, :7]), ValueError, r"X must have shape \(N, 1, 8, 8\)"),
        (dict(X=x[0]), ValueError, "X must have shape"),
        (dict(X=np.where(np.arange(x.size).reshape(x.shape) == 3, np.nan, x)), ValueError, "X holds non-finite"),
        (dict(X=x.astype(np.int64)), TypeError, "X must be a float32 or float64"),
        (dict(y=y + 10), ValueError, r"labels must lie in \[0, 10\)"),
        (dict(y=-y - 1), ValueError, r"labels must lie in \[0, 10\)"),
        (dict(y=y.astype(float)), TypeError, "integer class labels"),
        (dict(y=y[:-1]), ValueError, r"y must have shape \(6,\)"),
        (dict(optimizer="lbfgs"), ValueError, "optimizer must be one of"),
        (dict(lr=-1.0), ValueError, "lr"),
        (dict(lr=float("nan")), ValueError, "lr must be finite"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(epochs=1.5), TypeError, "epochs"),
        (dict(beta1=0.9), TypeError, "sgd takes the hyper-parameters"),
        (dict(optimizer="adam", beta2=1.0), ValueError, "beta2"),
        (dict(weight_decay=1.0), ValueError, "weight_decay"),
        (dict(X_val=x), ValueError, "X_val and y_val must be given together"),
        (dict(X_val=x[:, :, :, :4], y_val=y), ValueError, "X_val must have shape"),
    ]
    for change, exc, match in bad:
        kw = dict(X=x, y=y, optimizer="sgd", lr=0.1, progress=False)
        kw.update(change)
        with pytest.raises(exc, match=match):
            nn.fit(model, kw.pop("X"), kw.pop("y"), kw.pop("optimizer"), **kw)
    assert np.array_equal(model.flat_params, before)
    with pytest.raises(ValueError, match="x must have shape"):
        model.forward(x[:, :, :, :5])
    with pytest.raises(ValueError, match="y labels"):
        model.loss_and_grad(x, y + 10)
    with pytest.raises(TypeError, match="model must be"):
        nn.fit(object(), x, y, lr=0.1)


def test_divergence_stops_at_the_first_nonfinite_loss_keeping_finite_weights():
    model = nn.build("in8x8x1 conv3c4 relu pool2 fc10", seed=0, dtype="float32")
    x, y = _data(model, 32)
    with pytest.warns(RuntimeWarning, match="diverged at step"):
        hist = nn.fit(model, x * 1e3, y, "sgd", lr=1e30, epochs=20, batch_size=8, progress=False)
    assert hist.diverged and 0 <= hist.diverged_at < 80
    assert hist.steps == hist.diverged_at  # the updates kept
    assert np.all(np.isfinite(model.flat_params))
    assert np.all(np.isfinite(hist.loss[:-1])) and len(hist.loss) == hist.diverged_at + 1
    assert "smaller lr" in hist.message


def test_history_records_per_step_losses_and_per_epoch_figures(small):
    model, x, y = small
    m = nn.build(model.spec, seed=1, dtype="float64")
    hist = nn.fit(m, x, y, "rmsprop", lr=1e-3, epochs=3, batch_size=4, progress=False, X_val=x, y_val=y)
    assert hist.steps == 6 and hist.loss.shape == (6,)
    assert len(hist.train_acc) == len(hist.val_acc) == len(hist.seconds) == 3
    assert all(0 <= a <= 1 for a in hist.train_acc + hist.val_acc) and all(s > 0 for s in hist.seconds)
    # step 0's loss is the loss at the initial weights
    m0 = nn.build(model.spec, seed=1, dtype="float64")
    order = np.random.default_rng(0).permutation(6)[:4]
    assert hist.loss[0] == pytest.approx(m0.loss_and_grad(x[order], y[order])[0], rel=1e-12)


def test_progress_bar_runs_with_and_without_tqdm(small, monkeypatch):
    model, x, y = small
    m = nn.build(model.spec, seed=1, dtype="float64")
    a = nn.fit(m, x, y, lr=0.01, epochs=2, batch_size=3, progress=True)
    import sys

    monkeypatch.setitem(sys.modules, "tqdm", None)  # `from tqdm import tqdm` raises ImportError
    m = nn.build(model.spec, seed=1, dtype="float64")
    b = nn.fit(m, x, y, lr=0.01, epochs=2, batch_size=3, progress=True)
    np.testing.assert_array_equal(a.loss, b.loss)


def test_import_kernels_nn_stays_light():
    import subprocess
    import sys

    code = ("import sys, kernels.nn; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'tqdm', 'sklearn'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_build_picks_products_for_small_planes_and_direct_kernels_for_large():
    convs = [(layer.c_in, layer.out_hw) for layer in nn.build(
        "in28x28x1 conv5c6 relu pool2 conv5c16 relu pool2 conv3c8 fc10").layers if layer.kind == "conv"]
    assert convs == [(1, (28, 28)), (6, (14, 14)), (16, (7, 7))]
    # products on small batches of small planes, the direct kernels on large ones
    assert [nn_layers.choose_paths(1, hw) for _, hw in convs] == [(True,) * 3] * 3
    assert [nn_layers.choose_paths(64, hw) for _, hw in convs] == [(False,) * 3] * 2 + [(True,) * 3]
    assert [nn_layers.choose_paths(512, hw) for _, hw in convs] == [(False,) * 3] * 3


def test_small_batches_run_compiled_and_large_ones_layer_by_layer():
    """One image of a small network (LeNet-5's size), or a small batch of a smaller one, runs as
    one compiled call (kernels.nn.program); larger passes layer by layer (BLAS and the blocked
    kernels)."""
    lenet = nn.build("in28x28x1 conv5c6 relu pool2 conv5c16 relu pool2 fc120 relu fc84 relu fc10")
    tiny = nn.build("in32x32x1 conv3 pool2 conv3 pool2 conv3 pool2 fc10")
    assert lenet._compiled(1) is not None and lenet._compiled(2) is None and lenet._compiled(64) is None
    assert tiny._compiled(32) is not None and tiny._compiled(64) is None
    big = nn.build("in32x32x3 conv3c32 relu pool2 conv3c64 relu pool2 fc10")  # 5.6M an image
    assert big._compiled(1) is None
    assert lenet._compiled(1) is lenet._compiled(1)  # kept, with its buffers
    _force_paths("gemm")  # a forced conv path is the layer-by-layer pass
    try:
        assert lenet._compiled(1) is None
    finally:
        _force_paths(None)


def test_compiled_pass_returns_its_own_logits_and_a_serial_update_gives_the_same_bits(small):
    """Logits from the compiled pass are not views of its buffers (the next call would change
    them); the one-thread update that follows a small pass gives the parallel one's bits."""
    from kernels.nn import train as nn_train

    model = nn.build("in28x28x1 conv5c6 relu pool2 conv5c16 relu pool2 fc120 relu fc84 relu fc10", seed=1)
    rng = np.random.default_rng(0)
    x1, x2 = (rng.standard_normal((1, 1, 28, 28)).astype(np.float32) for _ in range(2))
    z1 = model.forward(x1)
    kept = z1.copy()
    model.forward(x2)
    assert np.array_equal(z1, kept)
    model.loss_and_grad(x1, [3])
    assert model.size > 4 * nn_train.UPDATE_BLOCK  # several blocks: the parallel kernel runs a prange
    out = {}
    for kernel in (nn_train._step_kernel, nn_train._step_kernel_serial):
        w, prev = model.flat_params.copy(), np.empty_like(model.flat_params)
        state = nn_train._state(model.size, w.dtype)
        for k in range(3):
            assert kernel(nn_train.ADAM, w, model.flat_grads, 1e-3, state, k, 1e-3, (0.9, 0.999, 1e-8), 0.99, prev) == 0.0
        out[kernel] = (w, state)
    (w0, s0), (w1, s1) = out.values()
    assert np.array_equal(w0, w1) and np.array_equal(s0, s1)


@pytest.mark.parametrize("spec, n", [("in28x28x1 conv5c6 relu pool2 conv5c16 relu pool2 fc120 relu fc84 relu fc10", 1),
                                     ("in8x8x1 conv3c16 relu pool2 conv3c32 relu pool2 fc10", 4)])
def test_forward_from_several_threads_at_once_gives_each_its_own_logits(spec, n):
    """Inference on one model from two threads (the compiled kernels release the GIL): each pass
    keeps its own buffers (the compiled program at batch 1, the im2col columns at 4), so every
    call returns what it returns alone. Shared buffers gave a third of the calls wrong logits."""
    import threading

    model = nn.build(spec, seed=0)
    assert (model._compiled(n) is not None) == (n == 1)
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((n,) + model.input_shape).astype(np.float32) for _ in range(2)]
    want = [model.forward(x) for x in xs]
    wrong = [0, 0]

    def infer(i):
        for _ in range(150):
            wrong[i] += not np.array_equal(model.forward(xs[i]), want[i])

    threads = [threading.Thread(target=infer, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert wrong == [0, 0]


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copied_model_is_a_model_of_its_own(how):
    """copy.deepcopy or pickle (keeping the best model of a run, or shipping one to a worker):
    the copy's params stay views into its own flat buffer, so training it changes its logits and
    not the original's; the per-thread buffers (not picklable) are made afresh."""
    import copy
    import pickle

    model = nn.build("in8x8x1 conv3c4 relu pool2 conv3c8 relu pool2 fc10", seed=1)
    x = np.random.default_rng(0).standard_normal((4, 1, 8, 8)).astype(np.float32)
    y = np.array([0, 1, 2, 3])
    before = model.forward(x)
    model.forward(x[:1])  # a compiled program and an im2col buffer exist to be left behind
    twin = copy.deepcopy(model) if how == "deepcopy" else pickle.loads(pickle.dumps(model))
    assert np.array_equal(twin.forward(x), before)
    assert all(np.shares_memory(p, twin.flat_params) for p in twin.params)
    assert not np.shares_memory(twin.flat_params, model.flat_params)
    trainer = nn.Trainer(twin, "sgd", lr=0.5)
    for _ in range(3):
        trainer.step(x, y)
    assert not np.array_equal(twin.forward(x), before)
    assert np.array_equal(model.forward(x), before)


def test_float32_model_keeps_float32_and_accepts_float64_input(small):
    model = nn.build("in8x8x1 conv3c4 relu pool2 fc10", seed=0, dtype="float32")
    _, x, y = small
    assert model.forward(x).dtype == np.float32
    np.testing.assert_allclose(model.forward(x), model.forward(x.astype(np.float32)), rtol=1e-6)
    assert isinstance(kernels.arch.Relu(), kernels.arch.Relu)


def test_x_beyond_the_model_dtypes_range_is_named_not_blamed_on_lr(small):
    """A finite float64 of 1e39 is inf in a float32 model: refused at the door, naming the
    argument, rather than turning into NaN logits or a "diverged, try a smaller lr"."""
    import warnings

    model = nn.build(small[0].spec, seed=0, dtype="float32")
    _, x, y = small
    big = x.copy()
    big[1, 0, 2, 3] = -1e39
    before = model.flat_params.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "overflow encountered in cast" on the way either
        with pytest.raises(ValueError, match=r"x holds values out of the range of the model's dtype float32 "
                                             r"\(\|x\| > 3.40282e\+38\): 1 of 384"):
            model.forward(big)
        with pytest.raises(ValueError, match="x holds values out of the range"):
            model.loss_and_grad(big, y)
        with pytest.raises(ValueError, match="X holds values out of the range"):
            nn.fit(model, big, y, lr=0.1, progress=False)
        with pytest.raises(ValueError, match="X_val holds values out of the range"):
            nn.fit(model, x, y, lr=0.1, X_val=big, y_val=y, progress=False)
        with pytest.raises(ValueError, match="x holds values out of the range"):
            nn.Trainer(model, lr=0.1).step(big, y)
    assert np.array_equal(model.flat_params, before)
    # a NaN is still called non-finite; a float64 model takes 1e39 as it is
    with pytest.raises(ValueError, match="x holds non-finite values"):
        model.forward(np.where(big == -1e39, np.nan, big))
    assert np.isfinite(nn.build(small[0].spec, seed=0, dtype="float64").forward(big)).all()


def test_largest_int64_strides_build_and_run():
    # on an 8x8 input, stride 2**63-1 and stride 8 both leave one window at the corner
    big = 2**63 - 1
    a = nn.build(f"in8x8x1 conv3s{big}c2 pool1s{big} fc2", seed=1, dtype="float64")
    b = nn.build("in8x8x1 conv3s8c2 pool1s8 fc2", seed=1, dtype="float64")
    x, y = _data(b, 3)
    np.testing.assert_array_equal(a.forward(x), b.forward(x))
    for ga, gb in zip(a.loss_and_grad(x, y)[1], b.loss_and_grad(x, y)[1]):
        np.testing.assert_array_equal(ga, gb)


@pytest.mark.parametrize("spec", ["in4x4x1 fc8 conv1c2 fc3", "in4x4x1 fc8 relu pool1 fc3",
                                  "in4x4x1 fc6 conv1c3", "in6x6x2 conv3c2 relu pool2"])
def test_torch_twin_unflattens_an_fc_output_before_a_conv_or_pool(spec):
    """kernels.nn keeps an fc output as (N, units, 1, 1), so a conv or pool may follow it; the
    torch twin unflattens it there, and flattens a spec that ends on a map into the logits."""
    model = nn.build(spec, seed=4, dtype="float64")
    x, y = _data(model, 3)
    net = torch_net(model)
    np.testing.assert_allclose(model.forward(x), net(torch.from_numpy(x)).detach().numpy(), rtol=1e-12, atol=1e-14)
    loss, grads = model.loss_and_grad(x, y)
    tloss, tgrads = torch_loss_and_grad(net, x, y)
    assert loss == pytest.approx(tloss, rel=1e-12)
    for g, tg in zip(grads, tgrads):
        np.testing.assert_allclose(g, tg, rtol=1e-10, atol=1e-14)


def test_trainer_steps_are_fits_steps(small):
    model, x, y = small
    a = nn.build(model.spec, seed=2, dtype="float64")
    b = nn.build(model.spec, seed=2, dtype="float64")
    hist = nn.fit(a, x, y, "adam", lr=1e-2, epochs=2, batch_size=4, seed=3, progress=False)
    trainer = nn.Trainer(b, "adam", lr=1e-2)
    losses = [trainer.step(x[idx], y[idx]) for idx in _torch_batches(6, 4, 3, 4)]
    np.testing.assert_array_equal(hist.loss, losses)
    assert trainer.k == 4 and not trainer.diverged
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    with pytest.raises(ValueError, match="x must have shape"):
        trainer.step(x[:, :, 1:], y)


@pytest.mark.parametrize("batch", [1, 8])
def test_per_layer_profile_runs_the_steps_training_runs(batch):
    """The breakdown in results/train.md times the path each batch takes (the compiled program at
    batch 1, the layers at 8 for this network): its steps leave the very weights of Trainer.step."""
    from kernels.apps.train.profile import kernels_breakdown

    spec = "in16x16x1 conv3c8 relu pool2 conv3c16 relu pool2 fc10"
    models = [nn.build(spec, seed=2) for _ in range(2)]
    assert (models[0]._compiled(batch) is not None) == (batch == 1)
    trainers = [nn.Trainer(m, "adam", lr=1e-2) for m in models]
    rng = np.random.default_rng(3)
    X = rng.standard_normal((4 * batch, 1, 16, 16)).astype(np.float32)
    y = rng.integers(0, 10, len(X))
    batches = [np.arange(s, s + batch) for s in range(0, len(X), batch)]
    table = kernels_breakdown(models[0], trainers[0], X, y, batches)
    for idx in batches:
        trainers[1].step(X[idx], y[idx])
    assert list(table)[:3] == ["conv1", "pool1", "relu1"] and all(v[0] > 0 for v in table.values())
    assert np.array_equal(models[0].flat_params, models[1].flat_params)


def test_train_command_writes_the_report(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    from kernels.__main__ import main

    assert main(["train", "--quick", "--no-progress", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "train.md").read_text()
    for needle in ("in8x8x1 conv3c16 relu pool2 conv3c32 relu pool2 fc10", "in32x32x1 conv3 pool2 conv3 pool2",
                   "test accuracy kernels.nn", "s/epoch PyTorch", "| update |", "train.png"):
        assert needle in text
    assert (tmp_path / "train.png").stat().st_size > 10_000
    import json

    res = json.loads((tmp_path / "train.json").read_text())["results"]
    for r in res:
        assert len(r["loss"]) == len(r["torch_loss"]) == 2 * -(-r["n_train"] // r["batch_size"])
        # float32, same weights and batches: the first step's loss agrees
        assert r["loss"][0] == pytest.approx(r["torch_loss"][0], rel=1e-5)
