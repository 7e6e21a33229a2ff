"""Atomic AWS requests for in-process moto (`mock_aws`).

AWS executes each request atomically: of concurrent conditional updates of one DynamoDB item, exactly one wins.
moto's in-process backends are not written for threads, so while deliveries run in threads every mocked request
is dispatched under one process-wide lock (a wrapper of `BotocoreStubber.__call__`, the `before-send` hook that
`mock_aws` answers requests from). The moto server child of `lnn local` serializes its requests itself
(`lnn_cli.cloud.emulator`). Requests to a real endpoint are not affected.
"""

import contextlib
import sys
import threading

REQUEST_LOCK = threading.RLock()
_install_lock = threading.Lock()
_users = 0
_original = None


@contextlib.contextmanager
def atomic_requests():
    """Within the block (reentrant, from any number of runtimes), each in-process moto request runs alone."""
    module = sys.modules.get("moto.core.botocore_stubber")
    if module is None:  # moto is not loaded in this process: nothing to serialize
        yield
        return
    _acquire(module.BotocoreStubber)
    try:
        yield
    finally:
        _release(module.BotocoreStubber)


def _acquire(stubber) -> None:
    global _users, _original
    with _install_lock:
        if _users == 0:
            _original = stubber.__call__

            def atomic_call(self, event_name, request, **kwargs):
                if not self.enabled:
                    return None
                with REQUEST_LOCK:
                    return _original(self, event_name, request, **kwargs)

            stubber.__call__ = atomic_call
        _users += 1


def _release(stubber) -> None:
    global _users, _original
    with _install_lock:
        _users -= 1
        if _users == 0:
            stubber.__call__ = _original
            _original = None
