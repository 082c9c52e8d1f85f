"""Registers the ``slow`` marker for the constraint tests (``-m "not slow"``)."""


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running test (CI may skip it)")
