"""fastact's kernels against NumPy and the peers, the memory-copy roofline, and how the
multi-threaded kernels scale with threads.

``kernel_case``, ``copy_case`` and ``scaling_case`` are parametrized by ``conftest.py`` from
the registry and the selected grid; see :mod:`bench.cases`.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from bench import cases, peers, roofline
from fastact.reference import REFERENCE


def test_kernel(benchmark, kernel_case, bench_data, bench_measure, bench_smoke):
    case = kernel_case
    benchmark.group = case.group
    benchmark.extra_info.update(case.extra_info())
    why = peers.available(case.impl)
    if why is not None:
        pytest.skip(why)
    a = bench_data(case.dtype, case.size).arrays(case)
    try:
        fn = cases.build(case, a)
    except cases.Unavailable as e:
        pytest.skip(str(e))
    if bench_smoke:
        _check(case, a, fn)
    bench_measure(benchmark, fn, setup=a.restore)


def test_roofline(benchmark, copy_case, bench_data, bench_measure):
    dtype, size = copy_case
    d = bench_data(dtype, size)
    benchmark.group = f"roofline: parallel copy {dtype} n={size}"
    benchmark.extra_info.update(
        kind="roofline",
        impl="copy",
        dtype=dtype,
        size=d.n,
        size_label=size,
        mode="out",
        bytes=2 * d.n * d.dtype.itemsize,
    )
    roofline.prepare()
    bench_measure(benchmark, partial(roofline.parallel_copy, d.out, d.x))
    np.testing.assert_array_equal(d.out, d.x)


def test_scaling(benchmark, scaling_case, bench_data, bench_measure):
    """fastact's multi-threaded kernels (and the parallel copy) on 1, 2, ... threads."""
    import numba

    import fastact

    function, size, threads = scaling_case
    d = bench_data("float32", size)
    benchmark.group = f"threads: {function} float32 n={size}"
    benchmark.extra_info.update(kind="scaling", function=function, dtype="float32", size=d.n, size_label=size,
                                threads=threads, bytes=2 * d.n * d.dtype.itemsize)
    roofline.prepare()
    if function == "copy":
        fn = partial(roofline.parallel_copy, d.out, d.x)
    else:
        x = d.x.reshape(-1, 1000) if fastact.REGISTRY[function].kind == "rowwise" else d.x
        fn = partial(fastact.FUNCTIONS[function], x, out=d.out.reshape(x.shape), target="parallel")
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        bench_measure(benchmark, fn)
    finally:
        numba.set_num_threads(previous)


def _as_array(got):
    """A result as a NumPy array, whatever library made it."""
    if isinstance(got, list):  # ONNX Runtime's outputs
        got = got[0]
    if hasattr(got, "numpy") and not isinstance(got, np.ndarray):  # a torch tensor
        got = got.numpy()
    return np.asarray(got)


def _check(case, a, fn):
    """The implementation computes the function (once, against the float64 reference):
    a peer written wrong would otherwise be benchmarked for ever."""
    if a.restore is not None:
        a.restore()
    got = fn()
    got_w = None
    if case.kind == "weighted" and case.op == "backward":  # (dx, dweight)
        got, got_w = got
        got_w = _as_array(got_w)
    if case.mode == "out":
        got = a.out
    elif case.mode == "inplace":
        got = a.work
    got = _as_array(got)
    assert got.shape == case.result_shape, f"{case.id}: result shape {got.shape}, expected {case.result_shape}"
    if case.impl != "numpy.nansafe":  # the reference computes in whatever dtype it likes
        assert got.dtype == a.x.dtype, f"{case.id}: result dtype {got.dtype}, expected {a.x.dtype}"

    ref = REFERENCE[case.function]
    x, dy = a.x.astype(np.float64), a.dy.astype(np.float64)
    want_w = None
    if case.kind in ("reduction", "gated"):
        want = ref.forward(x, -1) if case.op == "forward" else ref.backward(dy, x, -1)
    elif case.kind == "weighted":
        w = a.w.astype(np.float64) if isinstance(a.w, np.ndarray) else np.asarray(a.w, np.float64)
        want = ref.forward(x, w, 1) if case.op == "forward" else ref.backward(dy, x, w, 1)
        if case.op == "backward":
            want, want_w = want
    elif case.op == "forward":
        want = ref.forward(x)
    elif case.op == "grad":
        want = ref.grad(x)
    elif case.op == "backward":
        want = ref.backward(dy, x=x)
    else:
        want = ref.backward(dy, y=np.asarray(a.y).astype(np.float64))
    tol = 2e-5 if a.x.dtype == np.float32 else 1e-11
    if case.impl.startswith("onnxruntime"):
        tol = max(tol, 1e-7)  # ONNX attributes (LeakyRelu's alpha) are float32 even in float64 graphs
    if case.impl.startswith("torch") and (case.function, case.op) == ("hardsigmoid", "backward"):
        tol = max(tol, 1e-7)  # PyTorch's hardsigmoid_backward takes 1/6 as a float32, in float64 too
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=case.id)
    if want_w is not None:  # a sum over the rows: relative to the sum of its terms' magnitudes
        mag = np.sum(np.abs(dy * x), axis=0)
        assert np.all(np.abs(got_w - want_w) <= tol * np.maximum(mag, 1)), f"{case.id}: the weight's gradient"
