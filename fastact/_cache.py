"""fastact's use of Numba's disk cache, made safe: shared between processes, unwritable, or
damaged, a cache costs at most compile time, never a wrong kernel or a crash.

Numba caches compiled kernels next to the source (``__pycache__``), else in
``NUMBA_CACHE_DIR`` or the user's cache directory, as an index file (key -> data file)
and numbered data files.  What goes wrong, and what fastact does about it:

* **Processes filling one cache together** (numba#4807).  Numba's save reads the index,
  picks the first unused number for a new entry, writes the index, then the data file.
  Two processes saving different kernels pick the same number: one's code ends up under
  the other's key, and every later process that loads it crashes.  fastact's caches
  (:class:`SafeCacheFile`) name each data file after the SHA-256 of its contents, write
  it before the index refers to it, and update the index under an exclusive file lock:
  a data file never changes once written, an index entry always points to a complete
  one, and no save loses another's entry.
* **A damaged entry** (a full disk, a killed process, a file edited or truncated): every
  entry is checked against its digest before it is unpickled; a mismatch, an unreadable
  file or an entry in Numba's own numbered format (which cannot be checked) is a miss,
  and the kernel is recompiled and saved afresh.  An exception while loading is a miss
  too, and a failed save only leaves the kernel uncached.
* **No writable location** (a read-only install in a container without a home
  directory): Numba refuses to create a cached function at all, so the kernels are
  cached in a private per-user temporary directory instead, or not at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import tempfile
import warnings
from contextlib import contextmanager

__all__ = ["protect", "scope", "choose_fallback_dir", "discard_entries"]

#: The marker of fastact's content-addressed data file names: ``<base>.fa-<digest>.nbc``.
MARK = ".fa-"
_DIGEST_CHARS = 24

_fallback_dir = None  # None: Numba's own locations work; "": no caching at all
_warned = False


def _safe_cache_file_class():
    from numba.core.caching import IndexDataCacheFile, _cache_log

    class SafeCacheFile(IndexDataCacheFile):
        """Numba's index-and-data cache file, with content-addressed data files, a locked
        index update and a digest check before anything is unpickled."""

        @classmethod
        def replacing(cls, original):
            base = original._index_name[: -len(".nbi")]
            return cls(original._cache_path, base, original._source_stamp)

        def save(self, key, data):
            payload = self._dump(data)
            digest = hashlib.sha256(payload).hexdigest()[:_DIGEST_CHARS]
            name = f"{self._base}{MARK}{digest}.nbc"
            # Written whole (a temporary name, then renamed) before any index refers to it.
            with self._open_for_write(self._data_path(name)) as f:
                f.write(payload)
            _cache_log("[cache] data saved to %r", self._data_path(name))
            with _locked(self._index_path + ".lock"):
                try:
                    overloads, stale = self._load_index(), self._index_is_stale()
                except Exception:  # noqa: BLE001 - a damaged index: start a new one
                    overloads, stale = {}, True
                overloads[key] = name
                self._save_index(overloads)
                if stale:
                    self._remove_unreferenced(set(overloads.values()))

        def load(self, key):
            overloads = self._load_index()
            name = overloads.get(key)
            if not name or MARK not in name:
                return None  # absent, or in Numba's own format, which cannot be checked
            path = self._data_path(name)
            try:
                with open(path, "rb") as f:
                    payload = f.read()
            except OSError:
                return None
            expected = name.rsplit(MARK, 1)[1][: -len(".nbc")]
            if hashlib.sha256(payload).hexdigest()[:_DIGEST_CHARS] != expected:
                return None  # damaged: recompile and save afresh
            data = pickle.loads(payload)
            _cache_log("[cache] data loaded from %r", path)
            return data

        @property
        def _base(self) -> str:
            return self._index_name[: -len(".nbi")]

        def _index_is_stale(self) -> bool:
            """Whether an index exists for another Numba version or another source."""
            try:
                with open(self._index_path, "rb") as f:
                    version = pickle.load(f)
                    if version != self._version:
                        return True
                    stamp, _ = pickle.loads(f.read())
            except FileNotFoundError:
                return False
            return stamp != self._source_stamp

        def _remove_unreferenced(self, keep) -> None:
            """Remove the data files of this function's earlier sources (content-addressed
            names are never overwritten, so they would otherwise pile up)."""
            prefix = self._base + MARK
            with contextlib.suppress(OSError):
                for entry in os.listdir(self._cache_path):
                    if entry.startswith(prefix) and entry.endswith(".nbc") and entry not in keep:
                        with contextlib.suppress(OSError):
                            os.remove(self._data_path(entry))

    return SafeCacheFile


_SafeCacheFile = None


def protect(cache) -> None:
    """Make a Numba cache object (a dispatcher's or a cfunc's ``_cache``) safe as the
    module describes: :class:`SafeCacheFile` for its files, and a load that raises or a
    save that fails taken as a miss."""
    global _SafeCacheFile
    if getattr(cache, "_fastact_protected", False) or not hasattr(cache, "_cache_file"):
        return
    if _SafeCacheFile is None:
        _SafeCacheFile = _safe_cache_file_class()
    cache._cache_file = _SafeCacheFile.replacing(cache._cache_file)
    load, save = cache.load_overload, cache.save_overload

    def load_overload(sig, target_context):
        try:
            return load(sig, target_context)
        except Exception:  # noqa: BLE001 - any unreadable entry: recompile
            return None

    def save_overload(sig, data):
        try:
            save(sig, data)
        except Exception:  # noqa: BLE001 - the kernel works; it is just not cached
            pass

    cache.load_overload, cache.save_overload = load_overload, save_overload
    cache._fastact_protected = True


@contextmanager
def _locked(path: str):
    """An exclusive lock on ``path`` between processes (``flock``; nothing where the
    platform has none): the index's read-modify-write."""
    try:
        import fcntl
    except ImportError:  # Windows: saves may then lose each other's entries (a recompile)
        yield
        return
    with open(path, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


# --- no writable location -------------------------------------------------------------------------


def choose_fallback_dir() -> None:
    """Numba found no writable cache location: pick a private per-user temporary directory
    (or none), and warn once."""
    global _fallback_dir, _warned
    if _fallback_dir is not None:
        return
    path = ""
    try:
        user = str(os.getuid()) if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
        path = os.path.join(tempfile.gettempdir(), f"fastact-numba-cache-{user}")
        os.makedirs(path, mode=0o700, exist_ok=True)
        if hasattr(os, "getuid"):
            st = os.stat(path)
            # Cache files are pickles: never load them from a directory someone else owns.
            if st.st_uid != os.getuid() or st.st_mode & 0o022:
                path = tempfile.mkdtemp(prefix="fastact-numba-cache-")
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        path = ""
    _fallback_dir = path
    if not _warned:
        _warned = True
        where = f"caches them in {path}" if path else "compiles them in every process"
        warnings.warn(
            "fastact: Numba can cache compiled kernels neither next to fastact, nor in "
            f"NUMBA_CACHE_DIR, nor in the user's cache directory; fastact {where} "
            "(set NUMBA_CACHE_DIR to a writable directory to choose the place)",
            RuntimeWarning,
            stacklevel=5,
        )


@contextmanager
def scope():
    """While building fastact's kernels: Numba's cache redirected to the fallback
    directory, or disabled, when its own locations are unwritable."""
    if _fallback_dir is None:
        yield
        return
    from numba.core import config, dispatcher

    saved_dir, saved_enable = config.CACHE_DIR, dispatcher.Dispatcher.enable_caching
    if _fallback_dir:
        config.CACHE_DIR = _fallback_dir
    else:
        dispatcher.Dispatcher.enable_caching = lambda self: None
    try:
        yield
    finally:
        config.CACHE_DIR, dispatcher.Dispatcher.enable_caching = saved_dir, saved_enable


def fallback_dir():
    return _fallback_dir


def discard_entries(fn) -> None:
    """Remove the cache index of the function ``fn`` (its kernels are then recompiled)."""
    with contextlib.suppress(Exception):
        from numba.core.caching import FunctionCache

        with scope():
            os.remove(FunctionCache(fn)._cache_file._index_path)
