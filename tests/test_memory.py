"""Reuse of dropped results' memory (``fastact._memory``): correct, private, bounded."""

import gc
import pickle
import threading
import tracemalloc

import numpy as np
import pytest

import fastact as fa
from fastact import _memory

N = 10_000_000  # 40 MB of float32: pooled (at least _memory.MIN_BYTES)
RNG = np.random.default_rng(7)
X = RNG.standard_normal(N).astype(np.float32)


def leased(y) -> bool:
    """Whether ``y`` is (a view of) memory from the pool."""
    while isinstance(y, np.ndarray):
        y = y.base
    return isinstance(y, _memory._Lease)


@pytest.fixture(autouse=True)
def empty_pool():
    fa.release_memory()
    yield
    fa.set_config(memory_pool=1 << 30)
    fa.release_memory()


def test_a_dropped_result_serves_the_next():
    y = fa.relu(X, target="cpu")
    assert leased(y) and y.flags.writeable and y.flags.c_contiguous
    assert y.ctypes.data % 64 == 0
    address = y.ctypes.data
    np.testing.assert_array_equal(y, np.maximum(X, 0))
    del y
    before = fa.memory_stats()
    assert before["idle_blocks"] == 1 and before["idle_bytes"] >= X.nbytes
    z = fa.sigmoid(X, target="parallel")
    assert z.ctypes.data == address
    assert fa.memory_stats()["reused"] == before["reused"] + 1
    np.testing.assert_array_equal(z, fa.sigmoid(X, out=np.empty_like(X), target="cpu"))


def test_live_results_never_share_memory():
    ys = [fa.tanh(X * k, target="cpu") for k in range(4)]
    for i in range(4):
        for j in range(i):
            assert not np.shares_memory(ys[i], ys[j])
    for k, y in enumerate(ys):
        np.testing.assert_array_equal(y, fa.tanh(X * k, out=np.empty_like(X), target="cpu"))


def test_a_view_keeps_its_block():
    y = fa.relu(X, target="cpu")
    v = y[::3]
    expected = v.copy()
    del y
    gc.collect()
    assert fa.memory_stats()["idle_blocks"] == 0
    z = fa.elu(-X, target="cpu")  # must not be made from v's block
    assert not np.shares_memory(z, v)
    np.testing.assert_array_equal(v, expected)
    del v
    assert fa.memory_stats()["idle_blocks"] == 1


def test_a_result_in_a_reference_cycle_comes_back_when_collected():
    y = fa.relu(X, target="cpu")
    cycle = [y]
    cycle.append(cycle)
    del y, cycle
    gc.collect()
    assert fa.memory_stats()["idle_blocks"] == 1


@pytest.mark.parametrize("layout", ["C", "F", "transposed", "negative"])
def test_results_are_laid_out_as_numpy_would(layout):
    a = RNG.standard_normal((64, 256, 256))  # 32 MiB
    a = {"C": a, "F": np.asfortranarray(a), "transposed": a.transpose(2, 0, 1), "negative": a[::-1, :, ::-1]}[layout]
    y = fa.sigmoid(a, target="cpu")
    assert leased(y)
    assert y.strides == np.empty_like(a).strides
    np.testing.assert_array_equal(y, fa.sigmoid(np.ascontiguousarray(a), target="cpu"))


def test_every_kind_of_function_takes_its_results_from_the_pool():
    x = RNG.standard_normal((8192, 2048)).astype(np.float32)  # 64 MiB: every result at least 32 MiB
    results = [fa.softmax(x), fa.softmax.backward(x, x=x), fa.logsumexp.backward(x[:, :1], x=x, axis=1, keepdims=True),
               fa.glu(x), fa.prelu(x, np.float32(0.25)), fa.prelu.backward(x, x=x, weight=np.float32(0.25))[0],
               fa.relu.grad(x), fa.elu.grad2(x), fa.sparsemax(x), fa.softmax(x.astype(np.float16))]
    for r in results:
        assert leased(r)


def test_small_results_and_a_zero_setting_are_plain_numpy():
    assert fa.relu(X[: _memory.MIN_BYTES // 4 - 1]).base is None
    with fa.config(memory_pool=0):
        y = fa.relu(X)
        assert y.base is None and y.flags.owndata
    assert leased(fa.relu(X))


def test_the_limit_bounds_the_idle_memory_oldest_first():
    fa.set_config(memory_pool=3 * X.nbytes)
    ys = [fa.relu(X) for _ in range(6)]
    first = ys[0].ctypes.data
    last = ys[-1].ctypes.data
    while ys:
        del ys[0]  # dropped first to last
    stats = fa.memory_stats()
    assert stats["idle_bytes"] <= 3 * X.nbytes and stats["idle_blocks"] == 2
    assert stats["released"] >= 4
    kept = {fa.relu(X).ctypes.data}  # the most recently dropped block first
    assert last in kept and first not in kept
    fa.set_config(memory_pool=0)
    y = fa.relu(X)
    del y
    assert fa.memory_stats()["idle_bytes"] == 0  # a limit of 0 keeps nothing


def test_release_memory_gives_everything_back():
    y, z = fa.relu(X), fa.relu(X)
    expected = y.base.block.nbytes + z.base.block.nbytes
    del y, z
    assert fa.release_memory() == expected
    assert fa.memory_stats()["idle_bytes"] == 0 and fa.memory_stats()["idle_blocks"] == 0
    assert fa.release_memory() == 0


def test_sizes_share_blocks_only_when_close():
    y = fa.relu(X)
    address = y.ctypes.data
    del y
    assert fa.relu(X[: N * 15 // 16]).ctypes.data == address  # within 1/8: reused
    assert fa.memory_stats()["idle_blocks"] == 1  # (the result above was dropped again)
    assert fa.relu(X[: N * 85 // 100]).ctypes.data != address  # below 7/8 of it: a new block


def test_the_second_call_allocates_nothing_proportional():
    fa.relu.backward(X, x=X)  # its block is kept
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        y = fa.relu.backward(X, x=X)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert leased(y)
    assert peak < 64 * 1024, peak


def test_pickled_and_copied_results_are_ordinary_arrays():
    y = fa.relu(X)
    for r in (pickle.loads(pickle.dumps(y)), y.copy()):
        assert r.base is None or not leased(r)
        np.testing.assert_array_equal(r, y)


def test_threads_dropping_and_taking_results():
    errors = []

    def work(k):
        try:
            x = X * (k + 1)
            expected = np.maximum(x, 0)
            for _ in range(40):
                y = fa.relu(x, target="cpu")
                if not np.array_equal(y, expected):
                    errors.append(k)
                del y
        except Exception as e:  # noqa: BLE001  (reported below)
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert fa.memory_stats()["reused"] > 0


def test_a_failed_allocation_gives_the_kept_blocks_back_and_tries_again(monkeypatch):
    y = fa.relu(X)
    del y
    real_empty = np.empty
    calls = []

    def empty(*args, **kw):
        calls.append(args)
        if len(calls) == 1:
            raise MemoryError
        return real_empty(*args, **kw)

    monkeypatch.setattr(_memory.np, "empty", empty)
    z = _memory.empty(4 * N, np.float32)  # too large for the kept block
    assert z.shape == (4 * N,) and len(calls) == 2
    assert fa.memory_stats()["idle_blocks"] == 0


def test_settings_are_checked():
    with pytest.raises(ValueError, match=r"memory_pool must be a number of bytes"):
        fa.set_config(memory_pool=-1)
