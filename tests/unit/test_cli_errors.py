"""Every network, endpoint, credential and port error of a deployed-stack command: one line on stderr, exit 2, the
cause and the fix; never a traceback. The dead endpoint is a closed port on localhost (AWS_ENDPOINT_URL left set
after `lnn down`), so the SDK's own connection error is what the command meets."""

import json
import re
import socket
import subprocess
import sys

import boto3
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from moto import mock_aws

from lnn_cli.cloud.stack import CLI_BOTO_CONFIG, OUTPUT_KEYS, aws_errors_explained
from lnn_cli.inputs import DEMO_DATA
from lnn_cli.main import main
from lnn_core.errors import LnnInputError
from tests.support.cli import assert_one_line_error

COMMANDS = {
    "start": ["start", "--epochs", "2"],
    "status": ["status", "some-run"],
    "status --follow": ["status", "some-run", "--follow"],
    "results": ["results", "some-run"],
    "runs": ["runs"],
    "stop": ["stop", "some-run"],
    "resume": ["resume", "some-run"],
    "predict": ["predict", "some-run", "--data", str(DEMO_DATA)],
    "serve": ["serve", "--port", "0"],
}


def closed_port() -> int:
    """A port on localhost that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def credentials(monkeypatch):
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def lnn_stack(credentials):
    """A stack with LNN's outputs in an in-process AWS (its resources are not there: only the outputs are read)."""
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {key: {"Value": f"lnn-{key.lower()}"} for key in OUTPUT_KEYS},
    }
    with mock_aws():
        boto3.client("cloudformation").create_stack(StackName="LnnStack", TemplateBody=json.dumps(template))
        yield


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_every_command_against_a_dead_endpoint(credentials, monkeypatch, capsys, command):
    endpoint = f"http://localhost:{closed_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    assert_one_line_error(
        capsys,
        main(command),
        f"nothing answers at {endpoint} (AWS_ENDPOINT_URL): run `lnn up`, or unset AWS_ENDPOINT_URL to use AWS",
    )


@pytest.mark.parametrize(
    "command",
    [argv for name, argv in COMMANDS.items() if name != "serve"],
    ids=[name for name in COMMANDS if name != "serve"],
)
def test_an_endpoint_that_dies_after_the_stack_was_found(lnn_stack, monkeypatch, capsys, command):
    """The stack's outputs were read; then its table, functions and bucket do not answer (a service's own
    AWS_ENDPOINT_URL_<SERVICE>): the error names that variable."""
    endpoint = f"http://localhost:{closed_port()}"
    for service in ("DYNAMODB", "LAMBDA", "S3", "SNS"):
        monkeypatch.setenv(f"AWS_ENDPOINT_URL_{service}", endpoint)
    line = assert_one_line_error(capsys, main(command), f"nothing answers at {endpoint} (AWS_ENDPOINT_URL_")
    assert "to use AWS" in line


def test_the_cli_gives_up_on_a_dead_endpoint_quickly():
    """Two retries of a refused connection (at most 1 + 2 s of back-off), 2 s to connect: not botocore's 60 s."""
    assert (
        CLI_BOTO_CONFIG.retries == {"mode": "standard", "total_max_attempts": 3}
        and CLI_BOTO_CONFIG.connect_timeout == 2
    )


def test_a_dead_endpoint_names_the_local_stack_that_is_up(credentials, monkeypatch, capsys):
    from lnn_cli.cloud.up import registry

    monkeypatch.setattr(
        registry, "stacks_up", lambda: [{"endpoint": "http://localhost:4567", "state_dir": "/x", "pid": 1}]
    )
    endpoint = f"http://localhost:{closed_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    assert_one_line_error(
        capsys,
        main(["runs"]),
        f"nothing answers at {endpoint}",
        "a local stack is up at http://localhost:4567: export AWS_ENDPOINT_URL=http://localhost:4567",
    )


def test_a_silent_endpoint(credentials, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://localhost:4566")
    with pytest.raises(
        LnnInputError,
        match=r"http://localhost:4566 \(AWS_ENDPOINT_URL\) accepted the connection but did "
        r"not answer within 30 s; restart it with `lnn down` and `lnn up`",
    ):
        with aws_errors_explained("LnnStack"):
            raise ReadTimeoutError(endpoint_url="http://localhost:4566/")
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    with pytest.raises(
        LnnInputError, match=r"dynamodb.us-east-1.amazonaws.com did not answer within 30 s; check the network"
    ):
        with aws_errors_explained("LnnStack"):
            raise ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com/")


@pytest.mark.parametrize(
    "code, fragment",
    [
        ("ExpiredToken", "the AWS credentials have expired (ExpiredToken: the message); refresh them (`aws sso login`"),
        ("ExpiredTokenException", "the AWS credentials have expired"),
        (
            "UnrecognizedClientException",
            "AWS refused the credentials (UnrecognizedClientException: the message); fix them",
        ),
        ("InvalidSignatureException", "AWS refused the credentials"),
        ("AccessDeniedException", "the AWS credentials may not do this (AccessDeniedException: the message)"),
    ],
)
def test_expired_and_invalid_credentials(code, fragment):
    with pytest.raises(LnnInputError) as raised:
        with aws_errors_explained("LnnStack"):
            raise ClientError({"Error": {"Code": code, "Message": "the message"}}, "Query")
    assert fragment in str(raised.value)


def test_an_unknown_profile(credentials, monkeypatch, capsys):
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    assert_one_line_error(capsys, main(["runs"]), "(no-such-profile) could not be found", "unset AWS_PROFILE")


def test_another_aws_failure_is_one_line_too(lnn_stack, capsys):
    code = main(["runs"])  # the outputs name a table that does not exist
    captured = capsys.readouterr()
    assert code == 1 and "Traceback" not in captured.err
    assert captured.err.startswith("lnn: error: AWS failed: ") and "ResourceNotFoundException" in captured.err
    assert len(captured.err.strip().splitlines()) == 1


def test_serve_on_a_free_port_says_where_and_stops_on_ctrl_c(lnn_stack, capsys, monkeypatch):
    """The server is made on a socket bound beforehand (`listening_socket`), so the port it prints is that socket's:
    werkzeug's server, given the socket, has no `server_port`."""
    from werkzeug.serving import BaseWSGIServer

    def interrupted(server, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(BaseWSGIServer, "serve_forever", interrupted)
    code = main(["serve", "--port", "0"])
    captured = capsys.readouterr()
    assert code == 0 and "Traceback" not in captured.err, captured.err
    printed = " ".join(captured.out.split())
    assert re.search(r"serving stack LnnStack on http://127\.0\.0\.1:[1-9][0-9]*/ \(Ctrl-C to stop\) stopped", printed)


def test_ctrl_c_is_one_line_and_status_130_even_when_an_exit_hook_then_fails():
    """Ctrl-C reaches the whole process group, so it also ends the CDK's jsii node child (lnn local and lnn up import
    the CDK), whose exit hook then fails to close its pipe: that must not print a traceback after `lnn: interrupted`.
    """
    script = (
        "import atexit, sys\n"
        "from lnn_cli import main as cli\n"
        "def closing_a_dead_pipe():\n"
        "    raise BrokenPipeError(32, 'Broken pipe')\n"
        "atexit.register(closing_a_dead_pipe)\n"
        "def interrupted(args, console):\n"
        "    raise KeyboardInterrupt\n"
        "cli.dispatch = interrupted\n"
        "sys.exit(cli.main(['runs']))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (130, "lnn: interrupted\n")


def test_serve_on_a_taken_port(lnn_stack, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code = main(["serve", "--port", str(port)])
    assert_one_line_error(
        capsys, code, f"cannot listen on 127.0.0.1:{port} (Address already in use by another program)", "--port"
    )
