"""``python -m fastact apply``: files in, files out, chunk by chunk."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastact as fa
from fastact import _cli

pytest.importorskip("dask.array")


def _run(*args, check=True):
    return subprocess.run([sys.executable, "-m", "fastact", *map(str, args)], capture_output=True, text=True,
                          check=check)


def test_npy_elementwise_with_parameters(tmp_path):
    x = np.random.default_rng(0).standard_normal((300, 70)).astype(np.float32)
    src, dst = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(src, x)
    r = _run("apply", "leaky_relu", src, dst, "--param", "negative_slope=0.2", "--chunk-mb", "0.01")
    assert "100% Completed" in r.stderr  # Dask's progress bar
    np.testing.assert_array_equal(np.load(dst), fa.leaky_relu(x, negative_slope=0.2))
    _run("apply", "gelu", src, dst, "--op", "grad", "--param", "approximate=tanh", "--quiet")
    np.testing.assert_array_equal(np.load(dst), fa.gelu.grad(x, approximate="tanh"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy", "y.npy"]


def test_zarr_rowwise_keeps_rows_whole(tmp_path):
    zarr = pytest.importorskip("zarr")
    x = np.random.default_rng(1).standard_normal((200, 90))
    src, dst = tmp_path / "x.zarr", tmp_path / "y.zarr"
    z = zarr.open_array(str(src), mode="w", shape=x.shape, chunks=(50, 30), dtype=x.dtype)
    z[:] = x
    for axis in (0, 1):
        _run("apply", "softmax", src, dst, "--axis", axis, "--chunk-mb", "0.02", "--quiet")
        np.testing.assert_array_equal(zarr.open_array(str(dst), mode="r")[:], fa.softmax(x, axis=axis))


def test_npy_reduction_and_gated_unit_write_their_shapes(tmp_path):
    x = np.random.default_rng(2).standard_normal((400, 30))
    src, dst = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(src, x)
    for axis in (0, 1):
        _run("apply", "logsumexp", src, dst, "--axis", axis, "--chunk-mb", "0.02", "--quiet")
        np.testing.assert_array_equal(np.load(dst), fa.logsumexp(x, axis=axis))
    _run("apply", "glu", src, dst, "--chunk-mb", "0.02", "--quiet")
    np.testing.assert_array_equal(np.load(dst), fa.glu(x))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["apply", "relux", "IN", "OUT"], "unknown function 'relux'"),
        (["apply", "relu", "IN", "OUT", "--axis", "0"], "relu is elementwise"),
        (["apply", "softmax", "IN", "OUT", "--op", "grad"], "softmax is row-wise"),
        (["apply", "logsumexp", "IN", "OUT"], "logsumexp is a reduction: give the axis to reduce, --axis A"),
        (["apply", "glu", "IN", "OUT", "--op", "grad"], "glu is a gated unit: only --op forward"),
        (["apply", "relu", "IN", "OUT", "--param", "at_zero"], "--param takes key=value"),
        (["apply", "relu", "IN", "OUT", "--chunk-mb", "0"], "--chunk-mb must be a positive number"),
    ],
)
def test_bad_arguments_say_what_is_wrong(tmp_path, args, message):
    np.save(tmp_path / "IN.npy", np.zeros(3))
    args = [str(tmp_path / "IN.npy") if a == "IN" else str(tmp_path / "OUT.npy") if a == "OUT" else a for a in args]
    r = _run(*args, check=False)
    assert r.returncode != 0 and message in r.stderr
    assert not (tmp_path / "OUT.npy").exists()


def test_an_interrupted_run_leaves_no_output(tmp_path, monkeypatch):
    import dask.array as da

    x = np.arange(-50, 50, dtype=np.float64).reshape(10, 10)
    src, dst = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(src, x)

    def interrupted(sources, targets, **kw):
        targets[:5] = 1.0  # half the output written, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(da, "store", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _cli.apply("relu", src, dst, chunk_mb=0.0001, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]
    # an existing output is left as it was
    np.save(dst, np.zeros(3))
    with pytest.raises(KeyboardInterrupt):
        _cli.apply("relu", src, dst, chunk_mb=0.0001, progress=False)
    np.testing.assert_array_equal(np.load(dst), np.zeros(3))


def test_chunks_keep_row_axes_whole():
    assert _cli._chunks((1000, 300), 4, 0.1, set()) == (87, 300)
    assert _cli._chunks((1000, 300), 4, 0.1, {0}) == (1000, 26)
    assert _cli._chunks((10, 20, 30), 8, 1e-3, {1}) == (1, 20, 6)
    assert _cli._chunks((5,), 8, 64, set()) == (5,)


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_DATA as Linux counts it")
def test_a_file_larger_than_the_memory_allowed(tmp_path):
    """The input (400 MB) is larger than the process may allocate beyond what it holds after
    its imports (200 MB, RLIMIT_DATA: heap and private memory; the memory maps of the input
    and output files do not count): the run streams chunk by chunk."""
    n = 100 * 2**20
    src, dst = tmp_path / "big.npy", tmp_path / "out.npy"
    a = np.lib.format.open_memmap(src, mode="w+", dtype=np.float32, shape=(n // 1024, 1024))
    for i in range(0, a.shape[0], 8192):
        a[i : i + 8192] = np.linspace(-4, 4, 1024, dtype=np.float32)
    a.flush()
    del a
    code = textwrap.dedent(
        f"""
        import resource, numpy as np, dask.array, fastact as fa
        from fastact import _cli
        fa.sigmoid(np.ones((4, 4), np.float32), target="cpu")  # compiled before the limit
        fa.sigmoid(np.ones(4, np.float32), target="cpu")
        data = [int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmData")][0]
        resource.setrlimit(resource.RLIMIT_DATA, (data + 200 * 2**20, resource.RLIM_INFINITY))
        try:
            np.ones({n}, np.float32)
        except MemoryError:
            pass
        else:
            raise SystemExit("the limit does not hold")
        _cli.apply("sigmoid", {str(src)!r}, {str(dst)!r}, chunk_mb=8, progress=False)
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    out = np.load(dst, mmap_mode="r")
    expected = fa.sigmoid(np.linspace(-4, 4, 1024, dtype=np.float32))
    np.testing.assert_array_equal(out[0], expected)
    np.testing.assert_array_equal(out[-1], expected)
