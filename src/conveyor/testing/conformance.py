"""The behaviour every backend must show, as one test class to subclass.

A backend is done when it passes this suite against its real store. To run it,
provide a ``backend_factory`` fixture that yields an entered
:class:`~conveyor.testing.BackendFactory` on a fresh (or wiped) store, and
subclass :class:`BackendConformance` in a test module::

    @pytest.fixture
    def backend_factory(tmp_path):
        with BackendFactory(lambda: MyBackend(f"my://{tmp_path}/db")) as factory:
            yield factory

    class TestMyBackend(BackendConformance):
        pass

Each scenario is an ``async`` method run on the factory's event loop by
:func:`~conveyor.testing.async_test`; bodies read Given / When / Then and check
only what a user of the backend can see. Timing tests use delays of a few tenths
of a second, so the suite stays fast but needs a store whose clock is the
machine's within that margin.

The suite is split by topic, one mixin per module: ``_enqueue`` (enqueue, get,
claim, unique keys), ``_job_ids`` (a taken or repeated id refuses the
batch), ``_leases`` (extend, save, finish, release, recovery),
``_admin`` (cancel, delete, retry, list, prune, queues, workers), ``_unique``
(the job of a unique key in any state: ``find_unique``), ``_minutes`` (counts per
queue and minute) and ``_concurrency`` (wait / watch, races, the state machine of
:mod:`.model`).
"""

from __future__ import annotations

from conveyor.testing._admin import AdminConformance
from conveyor.testing._concurrency import ConcurrencyConformance
from conveyor.testing._enqueue import EnqueueConformance
from conveyor.testing._job_ids import JobIdConformance
from conveyor.testing._leases import LeaseConformance
from conveyor.testing._minutes import MinuteConformance
from conveyor.testing._unique import UniqueConformance


class BackendConformance(
    EnqueueConformance,
    JobIdConformance,
    LeaseConformance,
    AdminConformance,
    UniqueConformance,
    MinuteConformance,
    ConcurrencyConformance,
):
    """The conformance suite. Subclass it in a ``test_*.py`` module to collect it."""
