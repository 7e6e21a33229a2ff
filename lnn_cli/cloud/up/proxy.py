"""The endpoint of `lnn up`: a WSGI proxy in front of the moto server that forwards every request unchanged, except
what moto accepts but cannot carry out:

- Lambda `Invoke` of a function of the stack, answered as Lambda does: `Event` is queued in the local runtime (202),
  `RequestResponse` runs there and answers with the handler's result (or Lambda's `Unhandled` error), `DryRun` 204;
- an object created in S3 through the proxy (PutObject, CopyObject, CompleteMultipartUpload), which becomes
  EventBridge's "Object Created" event for the deployed rules (moto ignores the bucket's EventBridge setting).

The work itself is `LocalStack`'s (dispatch.py): the request threads here only hand it over.
"""

import base64
import http.client
import json
import re
import threading
import time
import traceback
import uuid
from urllib.parse import parse_qs, unquote, urlsplit

from lnn_cli.cloud.emulator import ACCOUNT_ID, REGION
from lnn_cli.cloud.runtime import PayloadTooLarge
from lnn_cli.cloud.up.dispatch import LocalStack, iso_now, log

SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024  # RequestResponse invoke's request and response payload limit
INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations/?$")
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
}


class Proxy:
    """A WSGI app that forwards to the moto server, except the Lambda invokes and the S3 uploads described above."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.stack: LocalStack | None = None  # set once the stack is deployed
        self._connections = threading.local()

    def __call__(self, environ, start_response):
        try:
            status, headers, body = self._handle(environ)
        except Exception:
            log(f"proxy error:\n{traceback.format_exc()}")
            status, headers, body = 502, [("Content-Type", "text/plain")], b"lnn up: the proxy failed; see up.log\n"
        start_response(
            f"{status} {http.client.responses.get(status, '')}".strip(),
            [(name, value) for name, value in headers if name.lower() not in HOP_BY_HOP],
        )
        return [body]

    def _handle(self, environ) -> tuple[int, list[tuple[str, str]], bytes]:
        method = environ["REQUEST_METHOD"]
        uri = environ.get("REQUEST_URI") or environ.get("RAW_URI") or environ.get("PATH_INFO", "/")
        if "://" in uri:  # an absolute URI
            parts = urlsplit(uri)
            uri = parts.path + (f"?{parts.query}" if parts.query else "")
        path, _, query = uri.partition("?")
        stream = environ["wsgi.input"]
        body = (
            stream.read()
            if environ.get("wsgi.input_terminated")
            else stream.read(int(environ.get("CONTENT_LENGTH") or 0))
        )
        headers = _request_headers(environ, len(body))
        match = INVOKE_PATH.match(path) if method == "POST" else None
        if match and self.stack is not None:
            role = self.stack.role_of(unquote(match["name"]))
            if role is not None:
                return self._invoke(role, headers, body)
        status, response_headers, payload = self._forward(method, uri, headers, body)
        if 200 <= status < 300 and method in ("PUT", "POST") and self.stack is not None:
            self._object_created(
                method, path, query, headers, response_headers, environ.get("REMOTE_ADDR", "127.0.0.1")
            )
        return status, response_headers, payload

    # ---- forwarding ----------------------------------------------------------------------------------------

    def _forward(self, method: str, uri: str, headers: dict[str, str], body: bytes):
        for attempt in (1, 2):  # a kept-alive connection the server closed: reconnect once
            connection = getattr(self._connections, "connection", None)
            if connection is None:
                connection = self._connections.connection = http.client.HTTPConnection(
                    "127.0.0.1", self.upstream_port, timeout=300
                )
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
            return _lambda_error(
                400, "InvalidRequestContentException", f"Could not parse request body into json: {error}", answer
            )
        if kind == "Event":
            try:
                self.stack.invoke_async(role, payload)
            except PayloadTooLarge as error:
                return _lambda_error(413, "RequestEntityTooLargeException", str(error), answer)
            return 202, answer, b""
        if len(body) > SYNC_PAYLOAD_LIMIT:
            return _lambda_error(
                413,
                "RequestEntityTooLargeException",
                f"Request must be smaller than {SYNC_PAYLOAD_LIMIT} bytes for the InvokeFunction operation",
                answer,
            )
        answer.append(("X-Amz-Executed-Version", "$LATEST"))
        try:
            result = self.stack.invoke_sync(role, payload)
        except Exception as error:  # the handler raised: Lambda answers 200 with a function error
            lines = traceback.format_exception(type(error), error, error.__traceback__)
            document = {
                "errorMessage": str(error),
                "errorType": type(error).__name__,
                "stackTrace": [line.rstrip() for line in lines[1:]],
            }
            answer += [("X-Amz-Function-Error", "Unhandled"), ("Content-Type", "application/json")]
            return 200, answer + _log_tail(headers, f"{type(error).__name__}: {error}"), json.dumps(document).encode()
        response = json.dumps(result).encode()
        if len(response) > SYNC_PAYLOAD_LIMIT:
            document = {
                "errorMessage": f"Response payload size ({len(response)} bytes) exceeded maximum allowed payload "
                f"size ({SYNC_PAYLOAD_LIMIT} bytes).",
                "errorType": "Function.ResponseSizeTooLarge",
            }
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
        detail_object = {
            "key": key,
            "size": int(size) if size.isdigit() else 0,
            "etag": returned.get("etag", "").strip('"'),
            "sequencer": f"{time.time_ns():X}",
        }
        if returned.get("x-amz-version-id"):
            detail_object["version-id"] = returned["x-amz-version-id"]
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Object Created",
            "source": "aws.s3",
            "account": ACCOUNT_ID,
            "time": iso_now(),
            "region": REGION,
            "resources": [f"arn:aws:s3:::{bucket}"],
            "detail": {
                "version": "0",
                "bucket": {"name": bucket},
                "object": detail_object,
                "request-id": returned.get("x-amz-request-id", str(uuid.uuid4())),
                "requester": ACCOUNT_ID,
                "source-ip-address": source_ip,
                "reason": reason,
            },
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
    return (
        "/s3/aws4_request" in authorization or "%2Fs3%2Faws4_request" in query or "/s3/aws4_request" in unquote(query)
    )


def _bucket_and_key(host: str, path: str) -> tuple[str | None, str | None]:
    """Virtual-hosted (`BUCKET.localhost:PORT/KEY`) or path-style (`localhost:PORT/BUCKET/KEY`) addressing."""
    hostname = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    labels = hostname.split(".")
    if len(labels) > 1 and labels[-1] == "localhost":
        return ".".join(labels[:-1]), unquote(path.lstrip("/")) or None
    bucket, _, key = path.lstrip("/").partition("/")
    return (unquote(bucket) or None), (unquote(key) or None)


def _lambda_error(status: int, code: str, message: str, headers: list[tuple[str, str]]):
    return (
        status,
        headers + [("x-amzn-ErrorType", code), ("Content-Type", "application/json")],
        json.dumps({"Type": "User", "message": message}).encode(),
    )


def _log_tail(headers: dict[str, str], text: str) -> list[tuple[str, str]]:
    if (_header(headers, "X-Amz-Log-Type") or "") != "Tail":
        return []
    return [("X-Amz-Log-Result", base64.b64encode(text.encode()[-4096:]).decode())]
