"""Where CUDA cannot run: importing fastact works, ``cuda_available()`` says False, and
``target="cuda"`` raises :class:`fastact.CudaUnavailableError` saying why and how to install
(never a Numba traceback).  Each case runs in a fresh interpreter with no GPU visible
(``CUDA_VISIBLE_DEVICES=""``, no simulator), so these tests mean the same on a GPU machine.

Also here, since they need no GPU: the ``stream=`` keyword is refused by the host targets,
and device arrays by ``target="cpu"``/``"parallel"``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastact as fa

INSTALL = "pip install numba-cuda"


def run_isolated(code: str, hide_numba_cuda: bool = False) -> dict:
    """Run ``code`` in a new interpreter without a visible GPU; it prints one JSON line."""
    prelude = ""
    if hide_numba_cuda:  # as if numba-cuda were not installed
        prelude = textwrap.dedent(
            """
            import importlib.util
            _find = importlib.util.find_spec
            importlib.util.find_spec = lambda name, *a: None if name == "numba_cuda" else _find(name, *a)
            """
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env["CUDA_VISIBLE_DEVICES"] = ""
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


CALLS = """
import json, sys
import numpy as np
import fastact as fa
imported_cuda = "numba.cuda" in sys.modules
x = np.linspace(-1, 1, 5)
cpu = fa.relu(x).tolist()
still_no_cuda = "numba.cuda" not in sys.modules
errors = []
for call in (
    lambda: fa.relu(x, target="cuda"),
    lambda: fa.sigmoid.grad(x, target="cuda"),
    lambda: fa.elu.backward(x, x=x, target="cuda"),
    lambda: fa.softmax(x, target="cuda"),
    lambda: fa.softmax.backward(x, y=x, target="cuda"),
):
    try:
        call()
        errors.append(None)
    except Exception as e:
        errors.append([type(e).__name__, str(e), isinstance(e, fa.CudaUnavailableError), isinstance(e, RuntimeError)])
print(json.dumps(dict(imported_cuda=imported_cuda, still_no_cuda=still_no_cuda, cpu=cpu,
                      available=fa.cuda_available(), errors=errors)))
"""


HAVE_NUMBA_CUDA = importlib.util.find_spec("numba_cuda") is not None


@pytest.mark.parametrize(
    "hide",
    [
        pytest.param(False, marks=pytest.mark.skipif(not HAVE_NUMBA_CUDA, reason="numba-cuda is not installed")),
        True,
    ],
    ids=["no-gpu", "no-numba-cuda"],
)
def test_cuda_target_unavailable(hide):
    r = run_isolated(CALLS, hide_numba_cuda=hide)
    assert not r["imported_cuda"] and r["still_no_cuda"], "import fastact or a CPU call imported numba.cuda"
    assert r["cpu"] == [0.0, 0.0, 0.0, 0.5, 1.0]
    assert r["available"] is False
    names = ("relu", "sigmoid.grad", "elu.backward", "softmax", "softmax.backward")
    for name, err in zip(names, r["errors"]):
        assert err is not None, f"{name}(target='cuda') did not raise"
        typ, msg, is_ours, is_runtime = err
        assert typ == "CudaUnavailableError" and is_ours and is_runtime
        assert msg.startswith(f"{name}(target='cuda'): the CUDA target is not available")
        why = "numba-cuda package is not installed" if hide else "no usable CUDA GPU or driver was found"
        assert why in msg
        assert (INSTALL if hide else "needs an NVIDIA GPU with its driver") in msg


def test_device_input_without_cuda_is_a_clear_error():
    code = """
    import json
    import fastact as fa

    class Foreign:  # what a CuPy array or a PyTorch CUDA tensor looks like from here
        __cuda_array_interface__ = {"shape": (3,), "typestr": "<f4", "data": (0, False), "version": 3, "strides": None}

    try:
        fa.relu(Foreign())  # target="auto" picks CUDA for device input
        print(json.dumps(None))
    except fa.CudaUnavailableError as e:
        print(json.dumps(str(e)))
    """
    msg = run_isolated(code)
    assert msg is not None and msg.startswith("relu(target='cuda')")
    assert (INSTALL if not HAVE_NUMBA_CUDA else "needs an NVIDIA GPU with its driver") in msg


class _FakeDeviceArray:
    __cuda_array_interface__ = {"shape": (3,), "typestr": "<f8", "data": (0, False), "version": 3, "strides": None}


@pytest.mark.parametrize("target", ["cpu", "parallel"])
def test_host_targets_refuse_device_arrays(target):
    with pytest.raises(TypeError, match=f"relu\\(\\): device arrays need target='cuda' or 'auto', got target='{target}'"):
        fa.relu(_FakeDeviceArray(), target=target)
    with pytest.raises(TypeError, match="device arrays need"):
        fa.relu(np.ones(3), out=_FakeDeviceArray(), target=target)


@pytest.mark.parametrize("target", ["auto", "cpu", "parallel"])
@pytest.mark.parametrize(
    "call",
    [
        lambda x, **k: fa.relu(x, **k),
        lambda x, **k: fa.leaky_relu.grad(x, negative_slope=0.1, **k),
        lambda x, **k: fa.sigmoid.backward(x, x=x, **k),
        lambda x, **k: fa.sigmoid.backward(x, y=x, **k),
        lambda x, **k: fa.softmax(x, **k),
        lambda x, **k: fa.softmax.backward(x, x=x, **k),
    ],
    ids=["call", "grad", "backward-x", "backward-y", "softmax", "softmax.backward"],
)
def test_stream_is_refused_on_host(call, target):
    x = np.linspace(-1, 1, 6)
    before = x.copy()
    with pytest.raises(ValueError, match="stream= is for the CUDA target only"):
        call(x, target=target, stream=object(), out=x)
    np.testing.assert_array_equal(x, before)
