"""Names that vulture reports as unused in the product but that a framework or an interface reads.

Not imported by anything: `vulture lambda_src lnn_cli lnn_stack app.py tests tests/vulture_allowlist.py` reads
it (vulture counts a name used anywhere as used). One line per name, with who uses it.
"""

from vulture.whitelist_utils import Whitelist

_ = Whitelist()

USED_BY_A_FRAMEWORK_OR_AN_INTERFACE = [
    _.exc,  # __exit__(self, *exc): the context manager protocol passes the exception (bench/reads.py, progress.py)
    _.signum,  # on_signal(signum, frame): the signature signal.signal calls a handler with (cloud/up/server.py)
    _.frame,  # on_signal(signum, frame), as above
    _.daemon_threads,  # socketserver reads it: the proxy's request threads do not keep `lnn up` alive (up/server.py)
    _.sequence,  # Delivery, a dataclass(order=True): the tie-break in the heap after `due` (cloud/runtime/queue.py)
    _.function_version,  # the Lambda context's attributes, which a handler may read (cloud/runtime/semantics.py)
    _.log_group_name,  # as above
    _.log_stream_name,  # as above
    _.pauses,  # ChaosCounts: read through asdict() into the run's chaos report (cloud/chaos.py)
    _.step_bodies,  # ChaosCounts, as above (presentation/report.py and tests/integration/test_chaos.py read it)
    _.crashes_in_fan_outs,  # ChaosCounts, as above
    _.readable,  # io.RawIOBase protocol: zipfile reads a part's directory through it (launch/parts.py)
    _.seekable,  # as above
    _.readinto,  # as above
    _.current_account,  # moto's DynamoHandler reads it when it answers (simulate/aws/direct_clients.py)
    _.Tagging,  # put_object(Tagging=...): boto3's keyword, sent by lnn_core.aws.ports, ignored by the simulation
    _.__wrapped__,  # functools' convention: inspect.unwrap and pytest read it (simulate/interleaving.py)
    _.sort_keys,  # Flask's JSON provider reads app.json.sort_keys (web/app.py)
    _.local_hosts_only,  # Flask calls it: @app.before_request (web/app.py)
    _.unraisablehook,  # the interpreter calls sys.unraisablehook(unraisable) for an exit hook's failure (main.py)
    _.unraisable,  # as above: the argument it passes
    _.predict_run,  # Flask calls it: @app.post route (web/app.py)
    _.input_error,  # Flask calls it: @app.errorhandler (web/app.py)
    _.aws_error,  # as above
    _.http_error,  # as above
    _.unexpected,  # as above
]
