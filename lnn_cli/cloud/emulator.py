"""An embedded AWS: a moto server on loopback, on a free port, in a child process.

A child process (not a thread) so that the emulator and the handlers use both cores. It handles one request at a
time (`AtomicRequests`), as AWS executes each request atomically, whatever the local runtime's concurrency. The
child exits when its standard input closes, so it never outlives the `lnn` process that started it, whatever
happens to it.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3

ACCOUNT_ID = "123456789012"  # moto's default account, fixed so that ARNs are predictable
REGION = "us-east-1"
# A distinctive fake key: the CDK CLI caches key -> account in ~/.cdk/cache, and "testing" may be cached for another
# emulator.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "LNNLOCALFAKEKEY",
    "AWS_SECRET_ACCESS_KEY": "fake",
    "AWS_SESSION_TOKEN": "fake",
}


class EndpointSession(boto3.Session):
    """A boto3 session whose clients and resources all talk to one endpoint (the emulator)."""

    def __init__(self, endpoint_url: str, **kwargs):
        super().__init__(**kwargs)
        self.endpoint_url = endpoint_url

    def client(self, *args, **kwargs):
        kwargs.setdefault("endpoint_url", self.endpoint_url)
        return super().client(*args, **kwargs)

    def resource(self, *args, **kwargs):
        kwargs.setdefault("endpoint_url", self.endpoint_url)
        return super().resource(*args, **kwargs)


@dataclass(frozen=True)
class Emulator:
    endpoint_url: str
    started_seconds: float

    def session(self) -> EndpointSession:
        return EndpointSession(
            self.endpoint_url,
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
            region_name=REGION,
        )

    def environment(self) -> dict[str, str]:
        """Environment variables that point an AWS tool (the CDK CLI) at the emulator, with fake credentials."""
        return {
            **FAKE_CREDENTIALS,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
        }


@contextmanager
def running_emulator(log_path: Path):
    """Start a fresh moto server; yield its `Emulator`; stop it on exit."""
    started = time.monotonic()
    with open(log_path, "ab") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "lnn_cli.cloud.emulator"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env={**os.environ, "MOTO_ACCOUNT_ID": ACCOUNT_ID},
        )
    try:
        port = _read_port(child, log_path)
        yield Emulator(f"http://localhost:{port}", round(time.monotonic() - started, 2))
    finally:
        child.stdin.close()  # the child's signal to exit
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _read_port(child: subprocess.Popen, log_path: Path) -> int:
    line = child.stdout.readline().decode().strip()  # empty when the child died
    if not line.isdigit():
        raise RuntimeError(f"the moto server did not start; see {log_path}")
    return int(line)


class AtomicRequests:
    """A WSGI app that handles one request at a time, body included: AWS executes each request atomically (of
    concurrent conditional updates of one DynamoDB item exactly one wins), and moto's backends are not written for
    threads. The server stays threaded, so that idle keep-alive connections of many clients never block it."""

    def __init__(self, app):
        self._app, self._lock = app, threading.Lock()

    def __call__(self, environ, start_response):
        with self._lock:
            response = self._app(environ, start_response)
            try:
                return list(response)
            finally:
                if hasattr(response, "close"):
                    response.close()


def serve() -> None:
    """The child: serve on 127.0.0.1 on a port the OS picks, print the port, run until stdin closes."""
    # A Ctrl-C in the terminal reaches the whole process group: the parent unwinds and closes stdin, but the server
    # must still answer until then (killed first, it turned the interrupt into the parent's connection error).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # imported here: MOTO_ACCOUNT_ID must be set before moto loads
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    from lnn_cli.cloud import moto_items, moto_transactions

    moto_transactions.install()
    moto_items.install()

    app = AtomicRequests(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()
    server.shutdown()
    thread.join()


if __name__ == "__main__":
    serve()
