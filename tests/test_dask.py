"""kernels.dask (issue 16): chunked filtering bit-identical to the in-memory kernels, and sweeps
on a real ``dask.distributed`` cluster.

One ``LocalCluster`` for the module (two single-threaded worker processes: the sweep tests are
about processes, a dying one included); every ``.compute()`` below runs on it. The oracle of the
chunked functions is the in-memory function on the whole array, compared byte for byte over
random shapes, chunkings, paddings, strides and dilations (hypothesis); the oracle of a sweep is
the serial loop in this process.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import kernels  # noqa: E402
import kernels.dask as kd  # noqa: E402
from kernels.hypergrad import hypergrad  # noqa: E402

DTYPES = [np.float32, np.float64]


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
        env={"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


# --------------------------------------------------------------------------- helpers


def _split(draw, n, most=3):
    """A random chunking of an axis of length n into at most ``most`` chunks (chunks of 1
    included; few chunks, because every task costs milliseconds on the cluster)."""
    cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=min(most - 1, n - 1)))) if n > 1 else []
    return tuple(np.diff([0, *cuts, n]).tolist())


def _same_bytes(got, want):
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes()


def _chunked_vs_whole(client, f_whole, f_chunked, x, chunks, *args, **kwargs):
    """The chunked function's computed result equals the whole-array one byte for byte, or both
    refuse the arguments with a ValueError."""
    try:
        want = f_whole(x, *args, **kwargs)
    except ValueError:
        with pytest.raises(ValueError):
            f_chunked(da.from_array(x, chunks=chunks), *args, **kwargs)
        return
    got = client.compute(f_chunked(da.from_array(x, chunks=chunks), *args, **kwargs)).result()
    _same_bytes(got, want)


PADDINGS = st.one_of(st.sampled_from(["same", "valid", "full"]), st.integers(0, 3),
                     st.tuples(st.integers(0, 3), st.integers(0, 3)))


@st.composite
def conv_case(draw, batch):
    dtype = draw(st.sampled_from(DTYPES))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    H, W = draw(st.integers(1, 30)), draw(st.integers(1, 30))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if batch:
        N, C, Co = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 5))
        x = rng.standard_normal((N, C, H, W)).astype(dtype)
        w = rng.standard_normal((Co, C, kh, kw)).astype(dtype)
        bias = rng.standard_normal(Co).astype(dtype) if draw(st.booleans()) else None
        chunks = (_split(draw, N, 2), _split(draw, C, 2), _split(draw, H), _split(draw, W))
    else:
        x = rng.standard_normal((H, W)).astype(dtype)
        w = rng.standard_normal((kh, kw)).astype(dtype)
        bias = float(rng.standard_normal()) if draw(st.booleans()) else None
        chunks = (_split(draw, H), _split(draw, W))
    kwargs = dict(stride=draw(st.sampled_from([1, 1, 2, 3, (1, 2), (3, 1)])), padding=draw(PADDINGS),
                  dilation=draw(st.sampled_from([1, 1, 2, (2, 1)])))
    return x, w, bias, chunks, kwargs


# --------------------------------------------------------------------------- chunked filters


@given(case=conv_case(batch=False), flipped=st.booleans())
def test_correlate2d_2d_chunked_is_bit_identical_to_in_memory(client, case, flipped):
    x, w, bias, chunks, kwargs = case
    whole, chunked = (kernels.convolve2d, kd.convolve2d) if flipped else (kernels.correlate2d, kd.correlate2d)
    _chunked_vs_whole(client, whole, chunked, x, chunks, w, bias, **kwargs)


@given(case=conv_case(batch=True), flipped=st.booleans())
def test_correlate2d_batch_chunked_is_bit_identical_to_in_memory(client, case, flipped):
    x, w, bias, chunks, kwargs = case
    whole, chunked = (kernels.convolve2d, kd.convolve2d) if flipped else (kernels.correlate2d, kd.correlate2d)
    _chunked_vs_whole(client, whole, chunked, x, chunks, w, bias, **kwargs)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,chunk", [((67, 131), (16, 32)), ((19, 31), (4, 3)), ((40, 300), (13, 300))])
def test_correlate2d_3x3_same_every_code_path(client, dtype, shape, chunk):
    """The single-channel 3x3 stencil (vector blocks, row groups, scalar tails, border pixels) on
    chunks of odd sizes and on chunks too small for the vector blocks."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((3, 3)).astype(dtype)
    for padding in ("same", "valid", "full"):
        _chunked_vs_whole(client, kernels.correlate2d, kd.correlate2d, x, chunk, w, 0.5, padding=padding)
    _chunked_vs_whole(client, kernels.convolve2d, kd.convolve2d, x, chunk, w, padding="same")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_correlate2d_1x1_filters_chunked_are_bit_identical(client, dtype, stride):
    """1x1 filters on several channels, with and without padding (a fuzz run found both off by
    a few ulp: the whole array went through BLAS, whose sums depend on the matrix shape, or a
    padded one through the blocked kernel while an interior chunk, unpadded, went to BLAS)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 16, 38, 6)).astype(dtype)
    w = rng.standard_normal((5, 16, 1, 1)).astype(dtype)
    for padding in (0, 1):
        _chunked_vs_whole(client, kernels.correlate2d, kd.correlate2d, x, (1, 16, 36, 4), w, stride=stride,
                          padding=padding)
    x = rng.standard_normal((1, 1, 12, 12)).astype(dtype)
    w = rng.standard_normal((2, 1, 1, 1)).astype(dtype)
    b = rng.standard_normal(2).astype(dtype)
    _chunked_vs_whole(client, kernels.correlate2d, kd.correlate2d, x, (1, 1, 4, 4), w, b, stride=stride, padding=1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_correlate2d_chunks_whose_windows_read_padding_only(client, dtype):
    """A stride and padding so large that every window of an output chunk lies in the padding
    (it crashed, 'need at least one array to concatenate'): the bias there, or NaN for a
    non-finite filter, as in memory."""
    x = np.arange(64, dtype=dtype).reshape(8, 8)
    _chunked_vs_whole(client, kernels.correlate2d, kd.correlate2d, x, 4, np.ones((1, 1), dtype), 0.5, stride=5,
                      padding=1)
    _chunked_vs_whole(client, kernels.correlate2d, kd.correlate2d, np.ones((1, 1), dtype), 1,
                      np.ones((1, 2), dtype), stride=3, padding=1)
    _chunked_vs_whole(client, kernels.correlate2d, kd.correlate2d, x, 3, np.ones((2, 1), dtype), stride=4,
                      padding=(3, 1))
    x4 = np.random.default_rng(3).standard_normal((2, 3, 9, 9)).astype(dtype)
    w4 = np.random.default_rng(4).standard_normal((2, 3, 1, 2)).astype(dtype)
    for w in (w4, np.where(np.arange(6).reshape(1, 3, 1, 2) == 4, np.inf, w4).astype(dtype)):
        _chunked_vs_whole(client, kernels.correlate2d, kd.correlate2d, x4, (1, 2, 4, 5), w, np.ones(2, dtype),
                          stride=(4, 5), padding=(3, 2))


@pytest.mark.parametrize("dtype", DTYPES)
def test_correlate2d_nonfinite_propagates_as_in_memory(client, dtype):
    """NaN and inf in the data, and an inf in the filter (0 * inf = NaN at the padding), land
    where the whole-array computation puts them."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((23, 29)).astype(dtype)
    x[3, 4], x[11, 0], x[22, 28] = np.nan, np.inf, -np.inf
    w = rng.standard_normal((3, 3)).astype(dtype)
    w_inf = w.copy()
    w_inf[0, 2] = np.inf
    for filt in (w, w_inf):
        for padding in ("same", "valid", 1):
            _chunked_vs_whole(client, kernels.correlate2d, kd.correlate2d, x, (7, 6), filt, padding=padding)
    xb = rng.standard_normal((2, 3, 17, 19)).astype(dtype)
    xb[1, 2, 8, 8] = np.nan
    wb = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    wb[1, 0, 1, 1] = np.inf
    _chunked_vs_whole(client, kernels.correlate2d, kd.correlate2d, xb, (1, 2, 5, 6), wb, padding="same")


@st.composite
def pool_case(draw):
    dtype = draw(st.sampled_from(DTYPES))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = draw(st.one_of(st.none(), st.integers(1, 4), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = (draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2)))
    ndim = draw(st.sampled_from([2, 3, 4]))
    lead = [draw(st.integers(1, 3)) for _ in range(ndim - 2)]
    H, W = draw(st.integers(1, 30)), draw(st.integers(1, 30))
    x = np.random.default_rng(draw(st.integers(0, 2**16))).standard_normal((*lead, H, W)).astype(dtype)
    if draw(st.booleans()):
        x.flat[draw(st.integers(0, x.size - 1))] = np.nan
    chunks = tuple(_split(draw, n, 2) for n in x.shape[:-2]) + tuple(_split(draw, n) for n in x.shape[-2:])
    return x, chunks, (kh, kw), dict(stride=stride, padding=padding)


@given(case=pool_case())
def test_maxpool2d_chunked_is_bit_identical_to_in_memory(client, case):
    x, chunks, kernel_size, kwargs = case
    _chunked_vs_whole(client, kernels.maxpool2d, kd.maxpool2d, x, chunks, kernel_size, **kwargs)


def test_maxpool2d_windows_stay_whole_in_a_block():
    """Stride-sized windows: every chunk boundary falls on a window start, and each output chunk
    is computed from its own block alone (the graph has no halo tasks)."""
    x = da.zeros((4, 3, 101, 90), chunks=(2, 3, 25, 31), dtype=np.float32)
    y = kd.maxpool2d(x, 2)
    assert y.shape == (4, 3, 50, 45)
    graph = dict(y.__dask_graph__())
    assert not [k for k in graph if isinstance(k, tuple) and str(k[0]).startswith("halo-")]


def test_chunked_filters_are_lazy_and_their_graph_linear():
    def explode(block):
        raise AssertionError("computed while building the graph")

    w = np.ones((3, 3), dtype=np.float64)
    conv, pool = {}, {}
    for blocks in (4, 8, 16):
        x = da.zeros((blocks * 8, blocks * 8), chunks=8).map_blocks(explode, dtype=np.float64)
        y = kd.correlate2d(x, w, padding="same")
        p = kd.maxpool2d(x, 3, stride=2, padding=1)
        assert y.shape == (blocks * 8, blocks * 8) and y.numblocks == (blocks, blocks)
        assert p.shape == (blocks * 4, blocks * 4)
        conv[blocks] = len(dict(y.__dask_graph__())) - len(dict(x.__dask_graph__()))
        pool[blocks] = len(dict(p.__dask_graph__())) - len(dict(x.__dask_graph__()))
    # 'same' on blocks as long as the filter: one task per output chunk and one edge task per
    # input block; pooling (rechunked onto the stride) a bounded number per chunk
    assert conv == {b: 2 * b * b for b in conv}
    assert all(pool[b] <= 8 * b * b for b in pool) and pool[16] <= 16 * pool[4] * 1.25


def test_chunked_filters_hold_their_own_copy_of_w_and_bias(client):
    """The graph keeps copies: the caller's filter or bias changed before .compute() does not
    change the result."""
    x = np.random.default_rng(5).standard_normal((10, 10))
    w, b = np.ones((3, 3)), np.ones((2, 1, 3, 3))
    y = kd.correlate2d(da.from_array(x, chunks=5), w, 0.5, padding=1)
    y4 = kd.convolve2d(da.from_array(x[None, None], chunks=(1, 1, 5, 5)), b, np.ones(2), padding=1)
    bias = np.ones(2)
    y4b = kd.correlate2d(da.from_array(x[None, None], chunks=(1, 1, 5, 5)), b, bias, padding=1)
    w[...] = 0
    b[...] = 0
    bias[...] = 7
    got = [f.result() for f in client.compute([y, y4, y4b])]
    _same_bytes(got[0], kernels.correlate2d(x, np.ones((3, 3)), 0.5, padding=1))
    _same_bytes(got[1], kernels.convolve2d(x[None, None], np.ones((2, 1, 3, 3)), np.ones(2), padding=1))
    _same_bytes(got[2], kernels.correlate2d(x[None, None], np.ones((2, 1, 3, 3)), np.ones(2), padding=1))


def test_chunked_outputs_in_recycled_buffers_stay_their_own(client):
    """Chunk outputs large enough to be recycled: two results held at once never share memory,
    a persisted result keeps its values while more tasks run, and the workers keep free buffers
    for the next tasks, at most KEEP_BYTES each."""
    from kernels import _recycled as R

    side = 1100  # 1100^2 float64 outputs: above MIN_BYTES
    x = da.random.default_rng(9).random((2 * side, 2 * side), chunks=side).persist()
    w = np.random.default_rng(10).standard_normal((3, 3))
    whole = kernels.correlate2d(x.compute(), w, padding="same")
    y1 = kd.correlate2d(x, w, padding="same").persist()
    y2 = kd.correlate2d(x, -w, padding="same").persist()
    for _ in range(3):  # more tasks of the same size, while y1 and y2 hold their chunks
        assert kd.correlate2d(x, 2 * w, padding="same").sum().compute() == pytest.approx(2 * whole.sum(), rel=1e-9)
    _same_bytes(y1.compute(), whole)
    _same_bytes(y2.compute(), kernels.correlate2d(x.compute(), -w, padding="same"))
    kept = client.run(lambda: __import__("kernels._recycled", fromlist=["free_bytes"]).free_bytes())
    assert any(k > 0 for k in kept.values()) and all(k <= R.KEEP_BYTES for k in kept.values()), kept


def test_chunked_filters_validate_before_building():
    x = da.zeros((20, 20), chunks=10, dtype=np.float32)
    w = np.ones((3, 3), dtype=np.float32)
    with pytest.raises(TypeError, match="x must have dtype"):
        kd.correlate2d(da.zeros((20, 20), dtype=np.int64), w)
    with pytest.raises(TypeError, match="x must be a dask array"):
        kd.correlate2d([[1.0]], w)
    with pytest.raises(ValueError, match="x must be 2 or 4-dimensional"):
        kd.correlate2d(da.zeros((2, 20, 20), dtype=np.float32), w)
    with pytest.raises(TypeError, match="w must have dtype float32"):
        kd.correlate2d(x, w.astype(np.float64))
    with pytest.raises(ValueError, match="padding='same' needs stride 1"):
        kd.correlate2d(x, w, padding="same", stride=2)
    with pytest.raises(ValueError, match="padding must be"):
        kd.convolve2d(x, w, padding="half")
    with pytest.raises(ValueError, match="stride"):
        kd.correlate2d(x, w, stride=0)
    with pytest.raises(ValueError, match="extent"):
        kd.correlate2d(x, np.ones((21, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="bias"):
        kd.correlate2d(x, w, np.ones(2, dtype=np.float32))
    with pytest.raises(ValueError, match="input channels"):
        kd.correlate2d(da.zeros((1, 2, 9, 9), dtype=np.float32), np.ones((1, 3, 3, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="padding must be at most half"):
        kd.maxpool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="kernel_size"):
        kd.maxpool2d(x, 0)


# --------------------------------------------------------------------------- sweeps


def _fields(result):
    """A result's fields as comparable values (arrays by their bytes)."""
    out = []
    for f in dataclasses.fields(result):
        v = getattr(result, f.name)
        out.append((f.name, (v.dtype.str, v.shape, v.tobytes()) if isinstance(v, np.ndarray) else v))
    return out


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(3)
    return rng.standard_normal((30, 60)), rng.standard_normal(30)


def test_sweep_of_hypergrad_and_sgd_equals_the_serial_loop(client, problem):
    X, t = problem
    hg = [dict(X=X, t=t, lr=lr, l2=l2, steps=steps)
          for lr in (1e-3, 3e-3, 1e-2) for l2 in (0.0, 1e-2) for steps in (50, 200)]
    got = kd.sweep("hypergrad", hg, client=client)
    assert [_fields(r) for r in got] == [_fields(kernels.hypergrad(**c)) for c in hg]
    assert got.stats["failed"] == 0 and got.stats["tasks"] >= 1 and got.stats["workers"] == 2
    sg = [dict(X=X, t=t, lr=lr, batch_size=8, steps=100, seed=seed) for lr in (1e-3, 1e-2) for seed in range(5)]
    for batch in (None, 1, 3, 100):
        got = kd.sweep(kernels.sgd, sg, client=client, batch=batch)
        assert [_fields(r) for r in got] == [_fields(kernels.sgd(**c)) for c in sg]
        if batch is not None:
            assert got.stats["batch"] == batch


def test_sweep_returns_a_failing_configuration_with_its_exception(client, problem):
    X, t = problem
    configs = [dict(X=X, t=t, lr=1e-3, steps=20), dict(X=X, t=t, lr=-1.0, steps=20),
               dict(X=X, t=t[:5], lr=1e-3, steps=20), dict(X=X, t=t, lr=2e-3, steps=20)]
    got = kd.sweep("hypergrad", configs, client=client, batch=2)
    assert _fields(got[0]) == _fields(kernels.hypergrad(**configs[0]))
    assert _fields(got[3]) == _fields(kernels.hypergrad(**configs[3]))
    for i in (1, 2):
        assert isinstance(got[i], kd.SweepFailure)
        assert got[i].config["lr"] == configs[i]["lr"] and got[i].config["t"].shape == configs[i]["t"].shape
        with pytest.raises(type(got[i].exception)):
            kernels.hypergrad(**configs[i])
        assert type(got[i].exception).__name__ in got[i].traceback
    assert got.stats["failed"] == 2


def _unpicklable_for_odd(i):
    """An unpicklable result for i = 1, an exception carrying a lock for i = 3, else i."""
    import threading

    if i == 1:
        return (j for j in range(3))
    if i == 3:
        err = RuntimeError("carries a lock")
        err.lock = threading.Lock()
        raise err
    return i


def _exits_for_two(i):
    if i == 2:
        raise SystemExit(3)
    return i


def test_sweep_returns_a_failure_for_a_configuration_that_exits(client):
    """fn calling sys.exit fails its configuration; the workers live on (it killed them, and the
    sweep resubmitted the task to the survivors three times before reporting KilledWorker)."""
    workers = len(client.scheduler_info()["workers"])
    got = kd.sweep(_exits_for_two, [dict(i=i) for i in range(4)], client=client, batch=1)
    assert [got[i] for i in (0, 1, 3)] == [0, 1, 3]
    assert isinstance(got[2], kd.SweepFailure) and isinstance(got[2].exception, SystemExit)
    assert got.stats["resubmitted"] == 0 and len(client.scheduler_info()["workers"]) == workers


def test_sweep_returns_a_failure_for_what_cannot_be_sent_back(client):
    """A result or an exception the worker cannot pickle fails its own configuration, not the
    sweep (it lost every result with 'Could not serialize object of type list')."""
    got = kd.sweep(_unpicklable_for_odd, [dict(i=i) for i in range(6)], client=client, batch=2)
    assert [got[i] for i in (0, 2, 4, 5)] == [0, 2, 4, 5]
    assert isinstance(got[1], kd.SweepFailure) and "could not be sent back" in got[1].traceback
    assert isinstance(got[3], kd.SweepFailure) and "carries a lock" in str(got[3].exception)
    assert got.stats["failed"] == 2


def test_sweep_survives_a_worker_killed_mid_sweep(client, problem, tmp_path):
    """The first configuration to run with ``kill`` set ends its worker's process (the nanny
    starts a new one); its task is retried and the sweep completes with every result right."""
    X, t = problem
    marker = str(tmp_path / "killed")

    def train(kill, **config):
        if kill:
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL)
            except FileExistsError:
                pass
            else:
                os.close(fd)
                os._exit(1)
        # the function, not the callable module kernels.hypergrad: cloudpickle cannot ship that
        return hypergrad(**config)

    configs = [dict(X=X, t=t, lr=1e-3 * (1 + i), steps=100, kill=(i == 5)) for i in range(12)]
    got = kd.sweep(train, configs, client=client, batch=2)
    assert os.path.exists(marker)  # a worker did die
    want = [_fields(kernels.hypergrad(**{k: v for k, v in c.items() if k != "kill"})) for c in configs]
    assert [_fields(r) for r in got] == want
    client.wait_for_workers(2, timeout=60)


def test_sweep_starts_its_own_local_cluster_when_given_no_client(problem):
    X, t = problem
    configs = [dict(X=X, t=t, lr=1e-3, steps=s) for s in (10, 20, 30)]
    got = kd.sweep("hypergrad", configs)
    assert [_fields(r) for r in got] == [_fields(kernels.hypergrad(**c)) for c in configs]
    assert got.stats["workers"] == (os.cpu_count() or 1)


def _worker_settings():
    import dask

    return (os.environ.get("MALLOC_TRIM_THRESHOLD_"), dask.config.get("distributed.worker.profile.enabled"),
            dask.config.get("distributed.admin.tick.interval"))


def test_the_cluster_sweep_starts_keeps_malloc_adaptive_and_its_housekeeping_quiet():
    """kernels/dask/sweeps.py QUIET_CLUSTER: no MALLOC_TRIM_THRESHOLD_ in the workers, not even
    one that an earlier default cluster's nannies left in this process (which keeps it), no
    statistical profiler, a slow event-loop tick."""
    from kernels.dask.sweeps import _start_local_cluster

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
        client, cluster = _start_local_cluster(1)
        try:
            assert list(client.run(_worker_settings).values()) == [(None, False, "1s")]
            assert os.environ.get("MALLOC_TRIM_THRESHOLD_") == "65536"
        finally:
            client.close()
            cluster.close()


def test_sweep_validates_its_arguments(client):
    with pytest.raises(ValueError, match="fn must name a public kernels function"):
        kd.sweep("no_such_kernel", [{}], client=client)
    with pytest.raises(TypeError, match="fn must be"):
        kd.sweep(42, [{}], client=client)
    with pytest.raises(TypeError, match=r"configs\[1\] must be a dict"):
        kd.sweep("sgd", [{}, 3], client=client)
    with pytest.raises(TypeError, match="configs must be a sequence"):
        kd.sweep("sgd", {"lr": 1.0}, client=client)
    with pytest.raises(ValueError, match="batch"):
        kd.sweep("sgd", [{}], client=client, batch=0)
    with pytest.raises(TypeError, match="client must be"):
        kd.sweep("sgd", [{}], client="tcp://127.0.0.1:8786")
    assert kd.sweep("sgd", [], client=client) == []
