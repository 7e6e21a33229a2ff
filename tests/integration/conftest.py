"""Fixtures of the in-process integration tests: the synthesized stack created by moto's CloudFormation."""

import fcntl
import io
import json
from pathlib import Path

import numpy as np
import pytest
from moto import mock_aws

from lnn_cli.cloud.deploy import deploy_in_process, synthesize
from lnn_cli.cloud.runtime import atomic_requests
from tests.conftest import REGION, blobs, session_sharing_models
from tests.support.arrays import npz_bytes


def dataset(m=40, features=3, seed=0):
    """A training file with a test split: (npz bytes, X_train, y_train)."""
    X, y = blobs(m + 10, features, seed)
    return npz_bytes(X=X[:m], y=y[:m], X_test=X[m:], y_test=y[m:]), X[:m], y[:m]


def lnn_statuses(notifications: list[dict]) -> list:
    """The status of each of LNN's own messages among a run's `notifications`, leaving out Lambda's destination
    records (the on-failure record of an event whose last retry failed too, which the run's catch-up then covered:
    the runtime publishes it to the same topic, with no status attribute)."""
    return [
        n["attributes"].get("status")
        for n in notifications
        if isinstance(n["body"], dict) and "requestContext" not in n["body"]
    ]


def model_arrays(model: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(model), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


@pytest.fixture(scope="session")
def assembly(tmp_path_factory, worker_id):
    """The app synthesized once per test session (cdk synth takes seconds; every module's stack uses it): under
    xdist the first worker to need it synthesizes while the others wait, then they all read the same cdk.out."""
    log_path = tmp_path_factory.mktemp("synth") / "synth.log"
    if worker_id == "master":  # no xdist
        return synthesize(log_path=log_path)
    session_dir = tmp_path_factory.getbasetemp().parent  # this session's, shared by its workers
    with open(session_dir / "assembly.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        synthesized = session_dir / "assembly.path"
        if not synthesized.exists():
            synthesized.write_text(str(synthesize(log_path=log_path)))
        return Path(synthesized.read_text())


@pytest.fixture(scope="module")
def stack(assembly):
    """One stack per module, created by moto's CloudFormation from the synthesized template."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
        }.items():
            patch.setenv(name, value)
        patch.delenv("AWS_ENDPOINT_URL", raising=False)
        with mock_aws():
            session = session_sharing_models()
            yield session, deploy_in_process(session, assembly, "LnnStack")


@pytest.fixture
def log(tmp_path):
    with open(tmp_path / "lambda.log", "w") as stream:
        yield stream


@pytest.fixture
def atomic_moto():
    """For a test that runs handlers in threads of its own against in-process moto, whose backends are not
    thread-safe: each request runs alone (`atomic_requests`, as the local runtime does while its deliveries run in
    threads), as AWS executes each request atomically. The lock is held per request only: a thread that waits
    between two requests (at a test's gate) holds nothing. Yields the lock."""
    from lnn_cli.cloud.runtime.atomic import REQUEST_LOCK

    with atomic_requests():
        yield REQUEST_LOCK


@pytest.fixture(scope="module")
def template(assembly):
    """The synthesized stack's CloudFormation template."""
    return json.loads((assembly / "LnnStack.template.json").read_text())
