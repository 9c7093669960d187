"""``fastact.config`` / ``set_config``: the target of calls that do not name one."""

import threading

import numpy as np
import pytest

import fastact as fa
from fastact import _cpu


@pytest.fixture
def spy(monkeypatch):
    """Records which kernels run: "parallel" for the multi-threaded loops, "cpu" for the
    single-threaded ufuncs and row loops."""
    seen = []
    real_parallel, real_ufunc, real_rows = _cpu.parallel, _cpu.ufunc, _cpu.rows

    def parallel(*a):
        seen.append("parallel")
        return real_parallel(*a)

    def rows(*a):
        seen.append("cpu")
        return real_rows(*a)

    class Ufunc:
        def __init__(self, uf):
            self.uf = uf

        def __call__(self, *a, **k):
            seen.append("cpu")
            return self.uf(*a, **k)

    monkeypatch.setattr(_cpu, "parallel", parallel)
    monkeypatch.setattr(_cpu, "rows", rows)
    monkeypatch.setattr(_cpu, "ufunc", lambda *a, **k: Ufunc(real_ufunc(*a, **k)))
    for fn in fa.FUNCTIONS.values():
        if hasattr(fn, "_ufuncs"):
            monkeypatch.setattr(fn, "_ufuncs", {})
    return seen


@pytest.fixture(autouse=True)
def restore():
    yield
    fa.set_config(target="auto", memory_pool=1 << 30)


X = np.linspace(-2, 2, 64)


@pytest.mark.parametrize("call", [
    lambda **k: fa.sigmoid(X, **k),
    lambda **k: fa.relu.grad(X, **k),
    lambda **k: fa.elu.backward(X, x=X, **k),
    lambda **k: fa.softmax(X.reshape(8, 8), **k),
    lambda **k: fa.softmax.backward(X.reshape(8, 8), y=X.reshape(8, 8), **k),
], ids=["call", "grad", "backward", "rowwise", "rowwise-backward"])
def test_block_sets_the_target_and_explicit_arguments_win(call, spy):
    assert fa.get_config() == {"target": "auto", "memory_pool": 1 << 30}
    call()  # 64 elements: auto runs on one thread
    assert spy == ["cpu"]
    spy.clear()
    with fa.config(target="parallel"):
        assert fa.get_config()["target"] == "parallel"
        call()
        assert spy == ["parallel"]
        spy.clear()
        call(target="cpu")  # an explicit argument wins
        assert spy == ["cpu"]
        spy.clear()
        call(target="auto")  # "auto" too: it is not the same as "not given"
        assert spy == ["cpu"]
        spy.clear()
    call()
    assert spy == ["cpu"]


def test_blocks_nest_and_restore_on_error():
    with fa.config(target="cpu"):
        with pytest.raises(RuntimeError):
            with fa.config(target="parallel"):
                assert fa.get_config()["target"] == "parallel"
                raise RuntimeError
        assert fa.get_config()["target"] == "cpu"
    assert fa.get_config()["target"] == "auto"


@pytest.mark.skipif(fa.cuda_available(), reason="needs a machine where target='cuda' is unavailable")
def test_the_configured_target_is_used():
    # Observable without a GPU: a configured "cuda" makes every call without target= ask
    # for CUDA, and only those.
    with fa.config(target="cuda"):
        with pytest.raises(fa.CudaUnavailableError, match=r"relu\(target='cuda'\)"):
            fa.relu(X)
        with pytest.raises(fa.CudaUnavailableError):
            fa.softmax.backward(X, x=X)
        fa.relu(X, target="cpu")
    fa.relu(X)


def test_set_config_applies_to_every_thread_and_blocks_take_precedence(spy):
    fa.set_config(target="parallel")
    seen = {}

    def worker():
        fa.sigmoid(X)
        seen["thread"] = list(spy)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen["thread"] == ["parallel"]
    spy.clear()
    with fa.config(target="cpu"):
        fa.sigmoid(X)
    assert spy == ["cpu"]
    assert fa.get_config()["target"] == "parallel"


def test_a_block_is_local_to_its_thread():
    inside, outside = threading.Event(), threading.Event()
    got = {}

    def blocked():
        with fa.config(target="cpu"):
            inside.set()
            outside.wait(10)
            got["blocked"] = fa.get_config()["target"]

    t = threading.Thread(target=blocked)
    t.start()
    inside.wait(10)
    got["main"] = fa.get_config()["target"]
    outside.set()
    t.join()
    assert got == {"blocked": "cpu", "main": "auto"}


@pytest.mark.parametrize("setter", [fa.set_config, lambda **k: fa.config(**k).__enter__()], ids=["set_config", "config"])
def test_bad_settings(setter):
    name = "set_config" if setter is fa.set_config else "config"
    with pytest.raises(ValueError, match=rf"{name}\(\): target must be one of 'auto', 'cpu', 'parallel', 'cuda', got 'gpu'"):
        setter(target="gpu")
    with pytest.raises(TypeError, match=rf"{name}\(\) got an unexpected keyword argument 'threads' \(settings: target, memory_pool\)"):
        setter(threads=2)
    for bad in (-1, 1.5, True, np.True_, "1G"):
        with pytest.raises(ValueError, match=rf"{name}\(\): memory_pool must be a number of bytes \(an int >= 0\), got"):
            setter(memory_pool=bad)
    assert fa.get_config() == {"target": "auto", "memory_pool": 1 << 30}


def test_memory_pool_takes_any_integer_type():
    fa.set_config(memory_pool=np.int64(1 << 20))
    assert fa.get_config()["memory_pool"] == 1 << 20 and type(fa.get_config()["memory_pool"]) is int
    with fa.config(memory_pool=np.uint8(0)):
        assert fa.get_config()["memory_pool"] == 0
