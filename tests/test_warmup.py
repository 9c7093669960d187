"""fastact.warmup: every kernel a function uses is prepared up front."""

import io

import numpy as np
import pytest

import fastact as fa
from fastact import _cpu, _warmup


def test_prepares_every_kernel_the_calls_use(monkeypatch):
    n = fa.warmup(["elu", fa.softmax], dtypes=["float32"], targets=["cpu", "parallel"], progress=False)
    # elu: call, grad, grad2, backward and backward(y=) with and without accumulate, on two
    # targets, and the seven ufuncs with parameters as operands; softmax: call, backward,
    # backward(y=) on two targets.
    assert n == 7 * 2 + 7 + 3 * 2
    before = _cpu.ufunc.cache_info()
    x = np.linspace(-2, 2, 64, dtype=np.float32).reshape(8, 8)
    for target in ("cpu", "parallel"):
        fa.elu(x, target=target)
        fa.elu.grad(x, alpha=0.5, target=target)
        fa.elu.backward(x, y=x, target=target)
        fa.elu.grad2(x, target=target)
        fa.elu.backward(x, x=x, out=x.copy(), accumulate=True, target=target)
        fa.softmax.backward(x, x=x, target=target)
    after = _cpu.ufunc.cache_info()
    assert after.misses == before.misses, "a call after warmup built a new ufunc"


def test_progress_bar():
    stream = io.StringIO()
    bar = _warmup._Progress(4, True, stream)
    for k in range(4):
        bar.step(f"step {k}")
    bar.close()
    text = stream.getvalue()
    assert "fastact warmup [" in text and "4/4 step 3" in text and "fastact warmup: 4 kernels in" in text
    quiet = io.StringIO()
    fa.warmup(["relu"], dtypes=["float64"], targets=["cpu"], progress=False)
    assert quiet.getvalue() == ""


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"warmup\(\): unknown function 'gelu2'"):
        fa.warmup(["gelu2"])
    with pytest.raises(ValueError, match=r"warmup\(\): dtypes must be float32 or float64 .* got 'float16'"):
        fa.warmup(["relu"], dtypes=["float16"])
    with pytest.raises(ValueError, match=r"warmup\(\): targets must be among 'cpu', 'parallel', 'cuda', got 'auto'"):
        fa.warmup(["relu"], targets=["auto"])
