import os
from pathlib import Path

import jax

# Tests compare float64 against NumPy; float32 cases pass dtypes explicitly.
jax.config.update("jax_enable_x64", True)

#: The XLA flag this test process compiles with (see `_compile_faster`).
FAST_COMPILE = "--xla_cpu_use_fusion_emitters=false"


def _compile_faster() -> None:
    """XLA's older CPU emitters, for this test process only.

    Most of the suite's time is XLA compiling small programs; the older
    emitters compile the solver in about half the time (n = 100: 2.4 -> 1.35
    s), and run it 10-25% slower, which tests do not mind. The flag is
    read once, when the backend starts, so it is set for that moment and the
    environment restored: the examples, docs pages and benchmark smoke runs,
    each a subprocess, compile with XLA's defaults, as users do.
    ``JAXBOUNDS_TEST_DEFAULT_EMITTERS=1`` runs the tests with the defaults too.
    """
    if os.environ.get("JAXBOUNDS_TEST_DEFAULT_EMITTERS"):
        return
    before = os.environ.get("XLA_FLAGS")
    os.environ["XLA_FLAGS"] = f"{before or ''} {FAST_COMPILE}".strip()
    try:
        jax.devices()  # the backend starts here, and reads XLA_FLAGS once
    finally:
        if before is None:
            del os.environ["XLA_FLAGS"]
        else:
            os.environ["XLA_FLAGS"] = before


_compile_faster()

#: Past this size the compilation cache drops its oldest entries at the start of
#: a run (JAX's own size limit needs the `filelock` package).
CACHE_LIMIT = 1 << 30


def pytest_configure(config):
    """JAX's persistent compilation cache, in pytest's cache directory.

    Most of the suite's time is XLA compiling many small programs; a second
    run loads them from disk instead (the key is the program, the compile
    options, the XLA flags and the jax version, so a changed program is a
    miss and compiles). The entries live under ``.pytest_cache/d/``
    (git-ignored); ``--cache-clear`` empties them and ``-p no:cacheprovider``
    turns the cache off. Programs with host callbacks (``jax.debug.callback``)
    are never cached by JAX.
    """
    cache = getattr(config, "cache", None)
    if cache is None:
        return
    directory = Path(cache.mkdir("jax-compilation-cache"))
    if not hasattr(config, "workerinput"):  # once, before xdist starts workers
        _trim(directory)
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def _trim(directory: Path) -> None:
    """Oldest entries out until the cache is under half of `CACHE_LIMIT`."""
    entries = [(p.stat(), p) for p in directory.iterdir() if p.is_file()]
    total = sum(s.st_size for s, _ in entries)
    if total <= CACHE_LIMIT:
        return
    for s, p in sorted(entries, key=lambda e: e[0].st_mtime):
        p.unlink(missing_ok=True)
        total -= s.st_size
        if total <= CACHE_LIMIT // 2:
            break


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slow`` first, in their order, then the rest.

    pytest-xdist deals tests out in this order: a long test dealt last keeps
    one worker busy alone at the end of the run, one dealt first runs beside
    the short ones.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
