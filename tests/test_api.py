"""The public surface: names, input conversion, result types, ``out=`` and pickling."""

import pickle

import numpy as np
import pytest
from _helpers import CPU_TARGETS, SHAPED

import fastact as fa


def test_namespace_follows_the_registry():
    assert list(fa.FUNCTIONS) == list(fa.REGISTRY)
    kinds = (fa.ELEMENTWISE, fa.ROWWISE, fa.REDUCTIONS, fa.GATED, fa.WEIGHTED)
    assert set().union(*kinds) == set(fa.REGISTRY) and sum(map(len, kinds)) == len(fa.REGISTRY)
    for name, fn in fa.FUNCTIONS.items():
        assert getattr(fa, name) is fn and name in fa.__all__
        assert fn.__name__ == name and repr(fn) == f"<fastact.{fa.REGISTRY[name].kind} {name}>"
    assert set(fa.TARGETS) == {"auto", "cpu", "parallel", "cuda"}
    assert {"relu", "leaky_relu", "elu", "sigmoid", "step", "identity", "softmax"} <= set(fa.REGISTRY)
    assert isinstance(fa.cuda_available(), bool)


@pytest.mark.parametrize("name", list(fa.REGISTRY))
def test_pickles_by_name(name):
    fn = fa.FUNCTIONS[name]
    assert pickle.loads(pickle.dumps(fn)) is fn


def _ops(name):
    fn = fa.FUNCTIONS[name]
    ops = [("f", lambda x, **k: fn(x, **k)), ("backward", lambda x, **k: fn.backward(np.ones_like(x), x=x, **k))]
    if name in fa.ELEMENTWISE:
        ops.append(("grad", lambda x, **k: fn.grad(x, **k)))
        ops.append(("grad2", lambda x, **k: fn.grad2(x, **k)))
    return ops


OPS = [(n, label, op) for n in SHAPED for label, op in _ops(n)]
OPS_IDS = [f"{n}-{label}" for n, label, _ in OPS]


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("case", OPS, ids=OPS_IDS)
def test_scalars_give_numpy_scalars(case, target):
    name, _, op = case
    for value, dtype in [(1.5, np.float64), (-2, np.float64), (True, np.float64),
                         (np.float32(0.5), np.float32), (np.float16(-0.5), np.float16),
                         (np.array(2.0), np.float64), (np.array(-1, np.int8), np.float64)]:
        r = op(value, target=target)
        assert type(r) is dtype, (value, type(r))
        assert np.ndim(r) == 0


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("case", OPS, ids=OPS_IDS)
def test_lists_ints_bools_and_float16(case, target):
    name, _, op = case
    as_float = op(np.array([[-1.0, 0.0, 2.0]]), target=target)
    for value in ([[-1, 0, 2]], np.array([[-1, 0, 2]], np.int32), np.array([[-1, 0, 2]], np.int8)):
        r = op(value, target=target)
        assert r.dtype == np.float64 and r.shape == (1, 3)
        np.testing.assert_array_equal(r, as_float)
    u = op(np.array([3, 0, 2], np.uint64), target=target)
    assert u.dtype == np.float64
    np.testing.assert_array_equal(u, op(np.array([3.0, 0.0, 2.0]), target=target))
    b = op(np.array([True, False]), target=target)
    assert b.dtype == np.float64
    np.testing.assert_array_equal(b, op(np.array([1.0, 0.0]), target=target))
    h = op(np.array([-1.0, 0.0, 2.0], np.float16), target=target)
    assert h.dtype == np.float16
    np.testing.assert_array_equal(h, op(np.array([-1.0, 0.0, 2.0], np.float32), target=target).astype(np.float16))
    # Non-native byte order is accepted and gives a native result.
    be = op(np.array([-1.0, 0.0, 2.0], ">f8"), target=target)
    assert be.dtype == np.float64 and be.dtype.isnative
    np.testing.assert_array_equal(be, as_float[0])


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("case", OPS, ids=OPS_IDS)
@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 4, 2)], ids=str)
def test_empty_arrays(case, target, shape):
    name, _, op = case
    for dtype in (np.float16, np.float32, np.float64):
        r = op(np.empty(shape, dtype), target=target)
        assert isinstance(r, np.ndarray) and r.shape == shape and r.dtype == dtype
        out = np.empty(shape, dtype)
        assert op(np.empty(shape, dtype), out=out, target=target) is out


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("case", OPS, ids=OPS_IDS)
def test_out_is_returned_and_filled(case, target):
    name, _, op = case
    x = np.linspace(-2, 2, 12).reshape(3, 4)
    out = np.full_like(x, np.nan)
    r = op(x, out=out, target=target)
    assert r is out
    np.testing.assert_array_equal(out, op(x, target=target))
    out0 = np.zeros(())
    assert op(np.array(1.5), out=out0, target=target) is out0  # 0-d out: returned as given
    assert out0 == op(1.5, target=target)


def test_memmap_and_views(tmp_path):
    m = np.memmap(tmp_path / "x.bin", dtype=np.float32, mode="w+", shape=(100,))
    m[:] = np.linspace(-1, 1, 100)
    np.testing.assert_array_equal(fa.relu(m), np.maximum(np.asarray(m), 0))
    fa.relu(m, out=m)
    assert (np.asarray(m) >= 0).all()


def test_mixed_dtypes_in_backward_promote():
    x32 = np.array([-1.0, 2.0], np.float32)
    assert fa.relu.backward(np.ones(2, np.float64), x=x32).dtype == np.float64
    assert fa.relu.backward(np.ones(2, np.float16), x=x32).dtype == np.float32
    assert fa.relu.backward(np.ones(2, np.float16), x=x32.astype(np.float16)).dtype == np.float16
    assert fa.softmax.backward(np.ones(2, np.float32), y=np.array([0.5, 0.5])).dtype == np.float64


@pytest.mark.parametrize("dy", [1.0, 2, True], ids=["float", "int", "bool"])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_python_scalars_are_weak_in_backward(dy, dtype):
    # As in NumPy 2 (np.multiply(1.0, x32) is float32): a Python scalar takes the dtype
    # of the array it meets; a NumPy scalar or array promotes as usual.
    x = np.array([-1.0, 2.0], dtype)
    r = fa.relu.backward(dy, x=x)
    assert r.dtype == dtype
    np.testing.assert_array_equal(r, np.multiply(dy, fa.relu.grad(x)))
    assert fa.softmax.backward(dy, x=x).dtype == dtype
    assert fa.relu.backward(np.float64(dy), x=x).dtype == np.float64
    assert isinstance(fa.relu.backward(dy, x=2.0), np.float64)
