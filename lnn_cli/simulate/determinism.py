"""The handlers' ids, seeds and wall clock made deterministic: every module of lnn_core that reads them gets the
simulator's (uuid4 from the delivery's identity, a seeded `secrets`, virtual time)."""

from __future__ import annotations

import hashlib
import uuid as _uuid
from typing import TYPE_CHECKING

from lnn_core import run_control

if TYPE_CHECKING:
    from lnn_cli.simulate.simulator import Simulator


def install(sim: Simulator) -> list:
    """Deterministic ids, seeds and wall clock for the handlers; returns what to restore."""
    from lnn_core.aws import sdk
    from lnn_core.launch import launcher
    from lnn_core.protocol import steps, trainer

    class _Uuid:
        UUID = _uuid.UUID

        @staticmethod
        def uuid4():  # distinct in every digit (claimants use the first 12), the same in every replay, and
            # a function of the delivery (not of the global order), so that the exhaustive search's states merge
            current = sim.current
            if current is None:
                sim._uuids += 1
                name = f"{sim.seed}/{sim._uuids}"
            else:
                current.uuids += 1
                name = f"{sim.seed}/{current.identity()}/{current.uuids}"
            return _uuid.UUID(bytes=hashlib.blake2b(name.encode(), digest_size=16).digest())

    class _Secrets:
        @staticmethod
        def randbelow(n):
            return sim._secrets.randrange(n)

    class _Time:
        def __getattr__(self, name):
            import time

            return getattr(time, name)

        def time(self):
            return sim.now

        def monotonic(self):
            return sim.now

        def sleep(self, seconds):
            sim.now += seconds

    import lnn_core.aws.table_access as table_access
    import lnn_core.aws.usage as usage

    saved = []
    # Every module of lnn_core that reads ids, secrets or the wall clock (a module missing here is an error)
    for module, name, value in (
        (trainer, "uuid", _Uuid),
        (run_control, "uuid", _Uuid),
        (launcher, "uuid", _Uuid),
        (launcher, "secrets", _Secrets),
        (sdk, "time", _Time()),
        (table_access, "time", _Time()),
        (usage, "time", _Time()),  # usage: a delivery's billed time is virtual too
        (launcher, "time", _Time()),
        (steps, "time", _Time()),
        (trainer, "time", _Time()),
    ):
        saved.append((module, name, getattr(module, name)))
        setattr(module, name, value)
    return saved
