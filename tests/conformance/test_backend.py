"""Every backend against its real store: the suite lives in :mod:`conveyor.testing`."""

from conveyor.testing import BackendConformance


class TestBackend(BackendConformance):
    """Collected once per ``backend_factory`` param (see conftest.py)."""
