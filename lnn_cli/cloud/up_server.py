"""The background process of `lnn up`: a moto server with the stack deployed, behind a proxy that runs Lambda.

The endpoint users get (`AWS_ENDPOINT_URL`) is a small HTTP proxy in front of the moto server (a child process,
as in `lnn local`). It forwards every request unchanged, except what moto accepts but cannot carry out:

- Lambda `Invoke` of a function of the stack: an `Event` invoke is queued in the local runtime (202), a
  `RequestResponse` invoke runs there and answers with the handler's result (or Lambda's `Unhandled` error);
- an object created in S3 through the proxy (PutObject, CopyObject, CompleteMultipartUpload) becomes the
  EventBridge "Object Created" event, delivered to the targets of every deployed rule whose pattern matches it
  (moto ignores the bucket's EventBridge setting); the patterns are the deployed rules', matched by moto's own
  `EventPattern`;
- the deployed schedule rules (`rate(...)`, the watchdog's) fire on their rate, from the time the stack is up.

All deliveries run in this process's main thread (or the runtime's threads, at `--concurrency` above 1), never in
the proxy's request threads: the proxy hands work over and waits for a synchronous result. The handlers talk to
the moto server directly, not through the proxy; only their invokes go through the runtime, as in `lnn local`.

Run as `python -m lnn_cli.cloud.up_server --state-dir DIR ...` by `lnn up` (lnn_cli/cloud/up.py); it reports
readiness with one JSON line on stdout, then logs to DIR/up.log.
"""

import argparse
import base64
import http.client
import json
import logging
import os
import queue
import re
import signal
import sys
import threading
import time
import traceback
import uuid
from concurrent.futures import Future
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .deploy import DeployError, deploy_to_emulator
from .emulator import ACCOUNT_ID, REGION, running_emulator
from .runtime import BUILDERS, LocalLambdaRuntime, PayloadTooLarge
from .stack import OUTPUT_KEYS, StackOutputs

SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024  # RequestResponse invoke's request and response payload limit
INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations/?$")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
              "transfer-encoding", "upgrade"}
RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
RATE_UNITS = {"minute": 60, "hour": 3600, "day": 86400}


def log(message: str) -> None:
    print(f"{datetime.now().isoformat(timespec='seconds')} {message}", file=sys.stderr, flush=True)


def _function_name(name_or_arn: str) -> str:
    """A function's name from its name, partial ARN or ARN (`arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`)."""
    parts = name_or_arn.split(":")
    if "function" in parts:
        return parts[parts.index("function") + 1]
    return parts[0]


def stack_functions(session, outputs: StackOutputs) -> dict[str, str]:
    """Role -> function name for the runtime: the three of `StackOutputs`, and any other `...FunctionName` output
    whose role the runtime can build (a PredictLambda's `predictor`, when the stack and the runtime have it)."""
    functions = {"trainer": outputs.trainer_function, "launcher": outputs.launch_function,
                 "watchdog": outputs.watchdog_function}
    if getattr(outputs, "predict_function", None) and "predictor" in BUILDERS:
        functions["predictor"] = outputs.predict_function
    stacks = session.client("cloudformation").describe_stacks(StackName=outputs.stack_name)["Stacks"]
    for output in stacks[0].get("Outputs") or []:
        key = output["OutputKey"]
        if key in OUTPUT_KEYS or not key.endswith("FunctionName") or output["OutputValue"] in functions.values():
            continue
        role = next((role for role in BUILDERS if role not in functions and key.lower().startswith(role[:5])), None)
        if role is None:
            log(f"note: output {key} names a function the local runtime cannot run; its invokes go to moto")
        else:
            functions[role] = output["OutputValue"]
    return functions


class EventRules:
    """The deployed EventBridge rules of the default bus: patterns (matched by moto's `EventPattern`) and rate
    schedules, each with its Lambda targets' function names."""

    def __init__(self, session):
        from moto.events.models import EventPattern  # moto's own matcher: the wildcard filter included

        events = session.client("events")
        self.patterns: list[tuple[str, Any, list[str]]] = []
        self.schedules: list[tuple[str, str, float, list[str]]] = []  # name, arn, period seconds, functions
        for rule in events.list_rules()["Rules"]:
            if rule.get("State") != "ENABLED":
                continue
            targets = [_function_name(target["Arn"]) for target in events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
                       if target["Arn"].startswith("arn:aws:lambda:")]
            if rule.get("EventPattern"):
                self.patterns.append((rule["Name"], EventPattern.load(rule["EventPattern"]), targets))
            elif rule.get("ScheduleExpression"):
                match = RATE.match(rule["ScheduleExpression"].strip())
                if match is None:
                    log(f"note: rule {rule['Name']}'s schedule {rule['ScheduleExpression']} is not a rate; it never fires here")
                    continue
                period = int(match[1]) * RATE_UNITS[match[2].rstrip("s")]
                self.schedules.append((rule["Name"], rule["Arn"], float(period), targets))

    def matching(self, event: dict[str, Any]) -> list[tuple[str, list[str]]]:
        return [(name, targets) for name, pattern, targets in self.patterns if pattern.matches_event(event)]


class LocalStack:
    """The runtime behind the proxy: async invokes queue, synchronous ones run in the main loop's thread."""

    def __init__(self, runtime: LocalLambdaRuntime, rules: EventRules):
        self.runtime, self.rules = runtime, rules
        self.roles = {function.name: role for role, function in runtime.functions.items()}
        self._sync: queue.Queue = queue.Queue()
        self._wake = threading.Event()
        self.stopping = threading.Event()
        started = time.monotonic()
        self._next_fire = {name: started + period for name, _, period, _ in rules.schedules}

    def role_of(self, name_or_arn: str) -> str | None:
        return self.roles.get(_function_name(name_or_arn))

    def invoke_async(self, role: str, payload: Any) -> None:
        self.runtime.invoke_async(self.runtime.functions[role], payload)  # thread-safe: under the runtime's lock
        self._wake.set()

    def invoke_sync(self, role: str, payload: Any) -> Any:
        """Run the invoke in the main loop's thread; return its result or raise the handler's error."""
        future: Future = Future()
        self._sync.put((role, payload, future))
        self._wake.set()
        return future.result(timeout=self.runtime.functions[role].timeout_seconds + 60)

    def stop(self) -> None:
        self.stopping.set()
        self._wake.set()

    def emit(self, event: dict[str, Any]) -> int:
        """Deliver an EventBridge event to the Lambda targets of the rules it matches (asynchronously, as EventBridge
        invokes Lambda). Returns the number of targets invoked."""
        invoked = 0
        for rule, targets in self.rules.matching(event):
            for name in targets:
                role = self.roles.get(name)
                if role is None:
                    log(f"rule {rule}: target {name} is not a function of the stack; skipped")
                    continue
                log(f"rule {rule}: {event['detail-type']} -> {role}")
                self.invoke_async(role, event)
                invoked += 1
        return invoked

    # ---- the main loop -------------------------------------------------------------------------------------

    def loop(self) -> None:
        while not self.stopping.is_set():
            self._wake.clear()
            self._serve_sync()
            self._fire_schedules()
            if self.runtime.pending:
                try:
                    self.runtime.run(until=self._interrupt)
                except Exception:  # a failure of the runtime itself (a destination's request): log, go on
                    log(f"the runtime failed:\n{traceback.format_exc()}")
                continue
            self._trim()
            due = min(self._next_fire.values(), default=time.monotonic() + 60) - time.monotonic()
            self._wake.wait(timeout=max(0.0, min(due, 60.0)))

    def _interrupt(self) -> bool:
        return self.stopping.is_set() or not self._sync.empty() or self._schedule_due()

    def _serve_sync(self) -> None:
        while not self._sync.empty():
            role, payload, future = self._sync.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(self.runtime.invoke(role, payload))
            except BaseException as error:  # the handler's error: Lambda answers it as a function error
                future.set_exception(error)

    def _schedule_due(self) -> bool:
        now = time.monotonic()
        return any(now >= due for due in self._next_fire.values())

    def _fire_schedules(self) -> None:
        now = time.monotonic()
        for name, arn, period, targets in self.rules.schedules:
            if now < self._next_fire[name]:
                continue
            self._next_fire[name] = now + period
            event = {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
                     "account": ACCOUNT_ID, "time": _iso_now(), "region": REGION, "resources": [arn], "detail": {}}
            for target in targets:
                role = self.roles.get(target)
                if role is not None:
                    log(f"rule {name}: scheduled event -> {role}")
                    self.invoke_async(role, event)

    def _trim(self) -> None:
        """Idle: forget the delivery records (a long-lived runtime would otherwise keep one per delivery)."""
        with self.runtime._lock:
            del self.runtime.deliveries[:]
            del self.runtime.failed_events[:-100]


def _iso_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Proxy:
    """A WSGI app that forwards to the moto server, except the Lambda invokes and the S3 uploads described above."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.stack: LocalStack | None = None  # set once the stack is deployed
        self.bucket: str | None = None
        self._connections = threading.local()

    def __call__(self, environ, start_response):
        try:
            status, headers, body = self._handle(environ)
        except Exception:
            log(f"proxy error:\n{traceback.format_exc()}")
            status, headers, body = 502, [("Content-Type", "text/plain")], b"lnn up: the proxy failed; see up.log\n"
        start_response(f"{status} {http.client.responses.get(status, '')}".strip(),
                       [(name, value) for name, value in headers if name.lower() not in HOP_BY_HOP])
        return [body]

    def _handle(self, environ) -> tuple[int, list[tuple[str, str]], bytes]:
        method = environ["REQUEST_METHOD"]
        uri = environ.get("REQUEST_URI") or environ.get("RAW_URI") or environ.get("PATH_INFO", "/")
        if "://" in uri:  # an absolute URI
            parts = urlsplit(uri)
            uri = parts.path + (f"?{parts.query}" if parts.query else "")
        path, _, query = uri.partition("?")
        stream = environ["wsgi.input"]
        body = stream.read() if environ.get("wsgi.input_terminated") else stream.read(int(environ.get("CONTENT_LENGTH") or 0))
        headers = _request_headers(environ, len(body))
        match = INVOKE_PATH.match(path) if method == "POST" else None
        if match and self.stack is not None:
            role = self.stack.role_of(unquote(match["name"]))
            if role is not None:
                return self._invoke(role, headers, body)
        status, response_headers, payload = self._forward(method, uri, headers, body)
        if 200 <= status < 300 and method in ("PUT", "POST") and self.stack is not None:
            self._object_created(method, path, query, headers, response_headers, environ.get("REMOTE_ADDR", "127.0.0.1"))
        return status, response_headers, payload

    # ---- forwarding ----------------------------------------------------------------------------------------

    def _forward(self, method: str, uri: str, headers: dict[str, str], body: bytes):
        for attempt in (1, 2):  # a kept-alive connection the server closed: reconnect once
            connection = getattr(self._connections, "connection", None)
            if connection is None:
                connection = self._connections.connection = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=300)
            try:
                connection.request(method, uri, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                return response.status, response.getheaders(), payload
            except (http.client.HTTPException, ConnectionError, OSError):
                connection.close()
                self._connections.connection = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    # ---- Lambda --------------------------------------------------------------------------------------------

    def _invoke(self, role: str, headers: dict[str, str], body: bytes):
        kind = _header(headers, "X-Amz-Invocation-Type") or "RequestResponse"
        request_id = str(uuid.uuid4())
        answer = [("x-amzn-RequestId", request_id)]
        if kind == "DryRun":
            return 204, answer, b""
        try:
            payload = json.loads(body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            return _lambda_error(400, "InvalidRequestContentException", f"Could not parse request body into json: {error}", answer)
        if kind == "Event":
            try:
                self.stack.invoke_async(role, payload)
            except PayloadTooLarge as error:
                return _lambda_error(413, "RequestEntityTooLargeException", str(error), answer)
            return 202, answer, b""
        if len(body) > SYNC_PAYLOAD_LIMIT:
            return _lambda_error(413, "RequestEntityTooLargeException",
                                 f"Request must be smaller than {SYNC_PAYLOAD_LIMIT} bytes for the InvokeFunction operation", answer)
        answer.append(("X-Amz-Executed-Version", "$LATEST"))
        try:
            result = self.stack.invoke_sync(role, payload)
        except Exception as error:  # the handler raised: Lambda answers 200 with a function error
            lines = traceback.format_exception(type(error), error, error.__traceback__)
            document = {"errorMessage": str(error), "errorType": type(error).__name__,
                        "stackTrace": [line.rstrip() for line in lines[1:]]}
            answer += [("X-Amz-Function-Error", "Unhandled"), ("Content-Type", "application/json")]
            return 200, answer + _log_tail(headers, f"{type(error).__name__}: {error}"), json.dumps(document).encode()
        response = json.dumps(result).encode()
        if len(response) > SYNC_PAYLOAD_LIMIT:
            document = {"errorMessage": f"Response payload size ({len(response)} bytes) exceeded maximum allowed payload "
                        f"size ({SYNC_PAYLOAD_LIMIT} bytes).", "errorType": "Function.ResponseSizeTooLarge"}
            return 200, answer + [("X-Amz-Function-Error", "Unhandled")], json.dumps(document).encode()
        return 200, answer + [("Content-Type", "application/json")] + _log_tail(headers, ""), response

    # ---- S3 -> EventBridge ---------------------------------------------------------------------------------

    def _object_created(self, method, path, query, headers, response_headers, source_ip) -> None:
        """An object created through the proxy: its EventBridge event, to the rules that match it."""
        if not _is_s3(headers, query):
            return
        bucket, key = _bucket_and_key(_header(headers, "Host") or "", path)
        if not bucket or not key:
            return
        arguments = parse_qs(query, keep_blank_values=True)
        if method == "PUT":
            if set(arguments) - {"x-id"}:  # ?partNumber, ?tagging, ?acl, ...: not an object created
                return
            reason = "CopyObject" if _header(headers, "x-amz-copy-source") else "PutObject"
        elif "uploadId" in arguments:
            reason = "CompleteMultipartUpload"
        else:
            return
        returned = {name.lower(): value for name, value in response_headers}
        size = _header(headers, "x-amz-decoded-content-length") or _header(headers, "Content-Length") or "0"
        detail_object = {"key": key, "size": int(size) if size.isdigit() else 0,
                         "etag": returned.get("etag", "").strip('"'), "sequencer": f"{time.time_ns():X}"}
        if returned.get("x-amz-version-id"):
            detail_object["version-id"] = returned["x-amz-version-id"]
        event = {
            "version": "0", "id": str(uuid.uuid4()), "detail-type": "Object Created", "source": "aws.s3",
            "account": ACCOUNT_ID, "time": _iso_now(), "region": REGION, "resources": [f"arn:aws:s3:::{bucket}"],
            "detail": {"version": "0", "bucket": {"name": bucket}, "object": detail_object,
                       "request-id": returned.get("x-amz-request-id", str(uuid.uuid4())), "requester": ACCOUNT_ID,
                       "source-ip-address": source_ip, "reason": reason},
        }
        self.stack.emit(event)


def _request_headers(environ, length: int) -> dict[str, str]:
    headers = {}
    for name, value in environ.items():
        if name.startswith("HTTP_"):
            headers[name[5:].replace("_", "-").title()] = value
    if environ.get("CONTENT_TYPE"):
        headers["Content-Type"] = environ["CONTENT_TYPE"]
    for name in list(headers):
        if name.lower() in HOP_BY_HOP or name.lower() == "content-length":
            del headers[name]
    headers["Content-Length"] = str(length)
    return headers


def _header(headers: dict[str, str], name: str) -> str | None:
    lowered = name.lower()
    return next((value for key, value in headers.items() if key.lower() == lowered), None)


def _is_s3(headers: dict[str, str], query: str) -> bool:
    authorization = _header(headers, "Authorization") or ""
    return "/s3/aws4_request" in authorization or "%2Fs3%2Faws4_request" in query or "/s3/aws4_request" in unquote(query)


def _bucket_and_key(host: str, path: str) -> tuple[str | None, str | None]:
    """Virtual-hosted (`BUCKET.localhost:PORT/KEY`) or path-style (`localhost:PORT/BUCKET/KEY`) addressing."""
    hostname = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    labels = hostname.split(".")
    if len(labels) > 1 and labels[-1] == "localhost":
        return ".".join(labels[:-1]), unquote(path.lstrip("/")) or None
    bucket, _, key = path.lstrip("/").partition("/")
    return (unquote(bucket) or None), (unquote(key) or None)


def _lambda_error(status: int, code: str, message: str, headers: list[tuple[str, str]]):
    return status, headers + [("x-amzn-ErrorType", code), ("Content-Type", "application/json")], \
        json.dumps({"Type": "User", "message": message}).encode()


def _log_tail(headers: dict[str, str], text: str) -> list[tuple[str, str]]:
    if (_header(headers, "X-Amz-Log-Type") or "") != "Tail":
        return []
    return [("X-Amz-Log-Result", base64.b64encode(text.encode()[-4096:]).decode())]


# ---- the process -----------------------------------------------------------------------------------------------

def serve(state_dir: Path, *, port: int, stack_name: str, concurrency: int, container_cpus: int, lock_fd: int | None) -> int:
    """Bind the proxy, start moto, deploy, report readiness on stdout (one JSON line), then serve until SIGTERM."""
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per proxied request in up.log
    ready = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # from now on anything printed goes to up.log; only `ready` reaches `lnn up`

    def report(document: dict[str, Any]) -> None:
        ready.write(json.dumps(document) + "\n")
        ready.flush()
        ready.close()

    proxy = Proxy(upstream_port=0)
    try:
        server = make_server("127.0.0.1", port, proxy, threaded=True)
    except (OSError, SystemExit) as error:  # werkzeug exits (SystemExit) when the port is in use
        why = getattr(error, "strerror", None) or "it is in use"
        report({"error": f"port {port} cannot be used ({why}); choose another with --port, or leave it out "
                "for a free one", "kind": "input"})
        return 2
    server.daemon_threads = True
    endpoint_port = server.server_address[1]
    log(f"lnn up: pid {os.getpid()}, proxy on 127.0.0.1:{endpoint_port}, state in {state_dir}")
    stopped = threading.Event()
    holder: dict[str, LocalStack] = {}

    def on_signal(signum, frame):
        stopped.set()
        if "stack" in holder:
            holder["stack"].stop()
        else:
            raise KeyboardInterrupt  # still deploying: unwind (the emulator's child is stopped on the way out)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        with running_emulator(state_dir / "emulator.log") as emulator:
            proxy.upstream_port = int(emulator.endpoint_url.rsplit(":", 1)[1])
            log(f"moto server at {emulator.endpoint_url} ({emulator.started_seconds:.1f} s)")
            try:
                deployment = deploy_to_emulator(emulator, state_dir / "deploy.log", stack_name=stack_name)
            except DeployError as error:
                report({"error": str(error), "kind": "deploy"})
                return 1
            session = emulator.session()
            functions = stack_functions(session, deployment.outputs)
            with open(state_dir / "lambda.log", "a", buffering=1) as lambda_log:
                runtime = LocalLambdaRuntime(session, functions, log_stream=lambda_log, concurrency=concurrency,
                                             container_cpus=container_cpus)
                rules = EventRules(session)
                stack = holder["stack"] = LocalStack(runtime, rules)
                if stopped.is_set():
                    return 0
                proxy.stack, proxy.bucket = stack, deployment.outputs.bucket
                thread = threading.Thread(target=server.serve_forever, name="lnn-up-proxy", daemon=True)
                thread.start()
                schedules = ", ".join(f"{name} every {period:.0f} s" for name, _, period, _ in rules.schedules)
                log(f"deployed {stack_name} with {deployment.method} ({deployment.seconds}); functions {functions}; "
                    f"{len(rules.patterns)} event pattern rule(s); schedules: {schedules or 'none'}")
                report({"pid": os.getpid(), "port": endpoint_port, "endpoint": f"http://localhost:{endpoint_port}",
                        "stack": stack_name, "deploy_method": deployment.method, "deploy_seconds": deployment.seconds,
                        "notes": deployment.notes, "functions": functions,
                        "schedules": {name: period for name, _, period, _ in rules.schedules}})
                try:
                    stack.loop()
                finally:
                    server.shutdown()
                    thread.join(timeout=5)
    except KeyboardInterrupt:
        log("stopped while starting")
        if not ready.closed:
            report({"error": "lnn up was interrupted while starting", "kind": "deploy"})
        return 1
    except Exception:
        log(f"lnn up failed:\n{traceback.format_exc()}")
        if not ready.closed:
            report({"error": f"the local stack failed to start; see {state_dir / 'up.log'}", "kind": "deploy"})
        return 1
    finally:
        server.server_close()
    log("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lnn_cli.cloud.up_server")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--stack", required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--container-cpus", type=int, default=1)
    parser.add_argument("--lock-fd", type=int)
    args = parser.parse_args(argv)
    return serve(Path(args.state_dir), port=args.port, stack_name=args.stack, concurrency=args.concurrency,
                 container_cpus=args.container_cpus, lock_fd=args.lock_fd)


if __name__ == "__main__":
    sys.exit(main())
