"""Aliasing: operands that share memory, an ``out`` whose elements share memory, and
``out`` arrays of ndarray subclasses.

The contract: any overlap between ``out`` and an input gives the out-of-place result
(exact aliasing, ``out=x``, is the in-place case); an ``out`` whose own elements share
memory is refused with ``ValueError`` before anything is written; a subclass is written
through its memory unless it overrides ``__array_ufunc__`` or ``__array_function__``,
which is refused with ``TypeError`` (one rule on every target).
"""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import CPU_TARGETS, SHAPED, assert_bitwise, parallel_threshold
from hypothesis import given
from hypothesis import strategies as st

import fastact as fa
from fastact import _dispatch
from fastact._spec import dfdy_allowed

#: Long enough that every target (auto included) runs its multi-threaded kernels.
N = 300_000


def _backward_ops():
    out = []
    for name in SHAPED:
        spec = fa.REGISTRY[name]
        out.append((name, "x"))
        if spec.kind == "rowwise" or (spec.dfdy is not None and dfdy_allowed(spec, spec.defaults)):
            out.append((name, "y"))
    return out


def _backward(name, by, dy, other, **kw):
    return fa.FUNCTIONS[name].backward(dy, **{by: other}, **kw)


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("write", ["dy", "other"])
@pytest.mark.parametrize("shift", [1, -1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,by", _backward_ops())
def test_backward_operands_are_shifted_views_of_one_buffer(name, by, dtype, shift, write, target):
    """``dy`` and ``x`` (or ``y``) are views of one buffer one element apart, and ``out`` is
    one of them: the result is the out-of-place one, bit for bit."""
    rng = np.random.default_rng(7)
    buf = (rng.standard_normal(N + 1) * 3).astype(dtype)
    if by == "y":  # a valid forward output
        buf = np.abs(buf) / (1 + np.abs(buf))
    a, b = buf[:-1], buf[1:]
    dy, other = (a, b) if shift == 1 else (b, a)
    if fa.REGISTRY[name].kind == "rowwise":
        dy, other = dy.reshape(-1, 1000), other.reshape(-1, 1000)
    expected = _backward(name, by, dy.copy(), other.copy(), target="cpu")
    out = dy if write == "dy" else other
    with parallel_threshold(1):
        got = _backward(name, by, dy, other, out=out, target=target)
    assert got is out
    assert_bitwise(out, expected, f"{name}.backward({by}=) shift {shift} out={write} {target}")


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("shift", [1, -1])
@pytest.mark.parametrize("name", fa.ROWWISE)
def test_rowwise_out_overlapping_another_operand_by_a_row(name, shift, target):
    """``out`` is ``x`` (or ``dy``) shifted by one row of 1000 (and by a row and one element)."""
    rng = np.random.default_rng(3)
    rows, n = 64, 1000
    for offset in (n, n + 1):
        buf = rng.standard_normal((rows + 2) * n)
        lo, hi = buf[: rows * n].reshape(rows, n), buf[offset : offset + rows * n].reshape(rows, n)
        src, dst = (lo, hi) if shift == 1 else (hi, lo)
        dy = rng.standard_normal((rows, n))
        fn = fa.FUNCTIONS[name]
        for label, run, expected in [
            ("forward", lambda o: fn(src, out=o, target=target), fn(src.copy(), target="cpu")),
            ("backward(x=) over x", lambda o: fn.backward(dy, x=src, out=o, target=target),
             fn.backward(dy, x=src.copy(), target="cpu")),
            ("backward(x=) over dy", lambda o: fn.backward(src, x=dy, out=o, target=target),
             fn.backward(src.copy(), x=dy, target="cpu")),
        ]:
            keep = buf.copy()
            with parallel_threshold(1):
                run(dst)
            assert_bitwise(dst, expected, f"{name} {label} offset {offset} shift {shift} {target}")
            buf[:] = keep


def _self_overlapping_outs(dtype):
    """(label, out, the buffer under it) for outs of shape (4, 4) whose elements share memory."""
    base = np.zeros(64, dtype)
    s = base.itemsize
    strided = np.lib.stride_tricks.as_strided
    return base, [
        ("zero stride", strided(base, (4, 4), (0, s), writeable=True)),
        ("all zero strides", strided(base, (4, 4), (0, 0), writeable=True)),
        ("rows overlapping rows", strided(base, (4, 4), (2 * s, s), writeable=True)),
        ("rows one element apart", strided(base, (4, 4), (s, s), writeable=True)),
        ("negative stride onto itself", strided(base[8:], (4, 4), (-s, s), writeable=True)),
        ("transposed overlap", strided(base, (4, 4), (s, 3 * s), writeable=True)),
    ]


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("name", SHAPED)
def test_self_overlapping_out_is_refused_before_any_write(name, target):
    fn = fa.FUNCTIONS[name]
    x = np.linspace(-2, 2, 16).reshape(4, 4)
    base, outs = _self_overlapping_outs(np.float64)
    base[:] = 7.0
    for label, out in outs:
        for run in (lambda: fn(x, out=out, target=target), lambda: fn.backward(x, x=x, out=out, target=target)):
            with pytest.raises(ValueError, match=rf"{name}(\.backward)?\(\): out has elements that share memory"):
                run()
            assert np.all(base == 7.0), f"{name} {label}: written before the error"


@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
       strides=st.lists(st.integers(-5, 5), min_size=3, max_size=3), itemsize=st.sampled_from([4, 8]))
def test_internal_overlap_test_is_exact(shape, strides, itemsize):
    """:func:`has_internal_overlap` agrees with a brute-force count of byte ranges, over
    positive, negative, zero and interleaved strides."""
    strides = [k * itemsize // 2 for k in strides[: len(shape)]]  # half-element steps too
    dtype = np.float32 if itemsize == 4 else np.float64
    span = sum(abs(st) * (n - 1) for st, n in zip(strides, shape)) + itemsize
    base = np.zeros(2 * span // itemsize + 2, dtype)
    start = sum(abs(st) * (n - 1) for st, n in zip(strides, shape) if st < 0)
    start = -(-start // itemsize) * itemsize
    a = np.lib.stride_tricks.as_strided(base[start // itemsize :], shape, strides)
    offsets = [sum(i * st for i, st in zip(idx, strides)) for idx in np.ndindex(*shape)]
    offsets.sort()
    brute = any(b - a_ < itemsize for a_, b in zip(offsets, offsets[1:]))
    assert _dispatch.has_internal_overlap(a) == brute, (shape, strides)


class Plain(np.ndarray):
    """A subclass that only adds an attribute: written through its memory."""

    tag = "plain"


class WithUfunc(np.ndarray):
    def __array_ufunc__(self, *args, **kwargs):
        return NotImplemented


class WithFunction(np.ndarray):
    def __array_function__(self, *args, **kwargs):
        return NotImplemented


def _entries():
    for name in SHAPED:
        fn = fa.FUNCTIONS[name]
        yield f"{name}", lambda x, o, t, fn=fn: fn(x, out=o, target=t)
        yield f"{name}.backward", lambda x, o, t, fn=fn: fn.backward(x, x=x, out=o, target=t)
        if name in fa.ELEMENTWISE:
            yield f"{name}.grad", lambda x, o, t, fn=fn: fn.grad(x, out=o, target=t)


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("func,run", list(_entries()), ids=[e[0] for e in _entries()])
def test_out_subclasses_one_rule_on_every_target(func, run, target, tmp_path):
    rng = np.random.default_rng(0)
    for shape in ((3, 4), (600, 1000)):  # the small-call paths and the multi-threaded ones
        x = rng.standard_normal(shape)
        expected = run(x, None, "cpu")
        for cls in (Plain, WithUfunc, WithFunction):
            out = np.full(shape, 5.0).view(cls)
            if cls is Plain:
                assert run(x, out, target) is out
                assert_bitwise(out.view(np.ndarray), expected, f"{func} {cls.__name__} {target}")
                continue
            with pytest.raises(TypeError, match=rf"{func.replace('.', '[.]')}\(\): out must be a numpy.ndarray "
                                                rf"or a subclass.*{cls.__name__}.*overrides"):
                run(x, out, target)
            assert np.all(out.view(np.ndarray) == 5.0), f"{func}: written before the error"
    mm = np.memmap(tmp_path / "out.bin", np.float64, "w+", shape=(3, 4))
    x = rng.standard_normal((3, 4))
    assert run(x, mm, target) is mm
    assert_bitwise(np.asarray(mm), run(x, None, "cpu"), f"{func} memmap {target}")


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_interleaved_but_distinct_out_is_accepted(target):
    """Strides that interleave without sharing memory are not mistaken for overlap."""
    base = np.zeros(64)
    out = np.lib.stride_tricks.as_strided(base, (3, 2), (8, 24), writeable=True)  # offsets 0, 24, 8, 32, 16, 40
    x = np.arange(6.0).reshape(3, 2) - 2
    with parallel_threshold(1 if target != "cpu" else _dispatch.PARALLEL_BYTES):
        fa.relu(x, out=out, target=target)
    assert_bitwise(out.copy(), np.maximum(x, 0), "interleaved out")


@pytest.mark.parametrize("call", ["forward", "backward out=dy", "accumulate", "out of place"])
def test_parallel_in_place_runs_the_in_place_kernel(call, monkeypatch):
    """In place on the input it overwrites, the multi-threaded elementwise path runs the
    kernel that reads that input through ``out`` (vectorised: with one array under two
    names LLVM's overlap check would run the loop an element at a time), with the same
    bits as out of place."""
    from fastact import _cpu

    op = {"backward out=dy": "backward_x", "accumulate": "backward_x_acc"}.get(call, "forward")
    pair = _cpu.parallel("elu", op)
    ran = []

    def spy(which, kernel):
        def run(*a):
            ran.append(which)
            return kernel(*a)

        return run

    monkeypatch.setattr(pair, "kernel", spy("plain", pair.kernel))
    monkeypatch.setattr(pair, "in_place", spy("in place", pair.in_place))
    rng = np.random.default_rng(5)
    x = rng.standard_normal(N).astype(np.float32)
    dy = rng.standard_normal(N).astype(np.float32)
    if op == "forward":
        want = fa.elu(x, target="cpu")
        got = fa.elu(x, out=x if call == "forward" else np.empty_like(x), target="parallel")
    elif op == "backward_x":
        want = fa.elu.backward(dy, x=x, target="cpu")
        got = fa.elu.backward(dy, x=x, out=dy, target="parallel")
    else:
        acc = rng.standard_normal(N).astype(np.float32)
        want = fa.elu.backward(dy, x=x, out=acc.copy(), accumulate=True, target="cpu")
        got = fa.elu.backward(dy, x=x, out=acc, accumulate=True, target="parallel")
    assert_bitwise(got, want)
    assert ran == (["plain"] if call == "out of place" else ["in place"])
