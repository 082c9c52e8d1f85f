"""Shared by the solver's tests: the ``slow`` marker (subprocess and long runs)."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: runs a subprocess or takes long; deselect with -m 'not slow'"
    )
