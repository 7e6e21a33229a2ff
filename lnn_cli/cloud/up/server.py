"""The background process of `lnn up`: a moto server with the stack deployed, behind a proxy that runs Lambda.

This module is the process: its arguments, the readiness report, signals, the moto server (a child process, as in
`lnn local`), the deploy, and the threads. The endpoint users get (`AWS_ENDPOINT_URL`) is the proxy (proxy.py),
which runs the stack's Lambda invokes and turns S3 uploads into the deployed rules' EventBridge events; the
deployed `rate(...)` schedules fire on their rate from the time the stack is up (dispatch.py).

All deliveries run in this process's main thread (or the runtime's threads, at `--concurrency` above 1), never in
the proxy's request threads: the proxy hands work over and waits for a synchronous result. The handlers talk to
the moto server directly, not through the proxy; only their invokes go through the runtime, as in `lnn local`.

Run as `python -m lnn_cli.cloud.up.server --state-dir DIR ...` by `lnn up` (lnn_cli/cloud/up/command.py; `lnn
down` signals only a process with that command line); it reports readiness with one JSON line on stdout, then logs
to DIR/up.log.
"""

import argparse
import json
import logging
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from lnn_cli.cloud.deploy import DeployError, deploy_to_emulator
from lnn_cli.cloud.emulator import running_emulator
from lnn_cli.cloud.runtime import LocalLambdaRuntime
from lnn_cli.cloud.up.dispatch import EventRules, LocalStack, log, stack_functions
from lnn_cli.cloud.up.proxy import Proxy


def serve(
    state_dir: Path,
    *,
    port: int,
    stack_name: str,
    concurrency: int,
    container_cpus: int,
    context: dict[str, str] | None = None,
) -> int:
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
        report(
            {
                "error": f"port {port} cannot be used ({why}); choose another with --port, or leave it out "
                "for a free one",
                "kind": "input",
            }
        )
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
                deployment = deploy_to_emulator(
                    emulator, state_dir / "deploy.log", stack_name=stack_name, context=context
                )
            except DeployError as error:
                report({"error": str(error), "kind": "deploy"})
                return 1
            session = emulator.session()
            functions = stack_functions(session, deployment.outputs)
            with open(state_dir / "lambda.log", "a", buffering=1) as lambda_log:
                runtime = LocalLambdaRuntime(
                    session, functions, log_stream=lambda_log, concurrency=concurrency, container_cpus=container_cpus
                )
                rules = EventRules(session)
                stack = holder["stack"] = LocalStack(runtime, rules)
                if stopped.is_set():
                    return 0
                proxy.stack = stack
                thread = threading.Thread(target=server.serve_forever, name="lnn-up-proxy", daemon=True)
                thread.start()
                schedules = ", ".join(f"{name} every {period:.0f} s" for name, _, period, _ in rules.schedules)
                log(
                    f"deployed {stack_name} with {deployment.method} ({deployment.seconds}); functions {functions}; "
                    f"{len(rules.patterns)} event pattern rule(s); schedules: {schedules or 'none'}"
                )
                report(
                    {
                        "pid": os.getpid(),
                        "port": endpoint_port,
                        "endpoint": f"http://localhost:{endpoint_port}",
                        "stack": stack_name,
                        "deploy_method": deployment.method,
                        "deploy_seconds": deployment.seconds,
                        "notes": deployment.notes,
                        "functions": functions,
                        "schedules": {name: period for name, _, period, _ in rules.schedules},
                    }
                )
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
    parser = argparse.ArgumentParser(prog="python -m lnn_cli.cloud.up.server")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--stack", required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--container-cpus", type=int, default=1)
    # up.lock's descriptor, inherited from `lnn up`: holding it open for the process's life is the lock
    parser.add_argument("--lock-fd", type=int)
    parser.add_argument("--context-json", default="{}", help="`lnn up`'s -c pairs, validated there")
    args = parser.parse_args(argv)
    return serve(
        Path(args.state_dir),
        port=args.port,
        stack_name=args.stack,
        concurrency=args.concurrency,
        container_cpus=args.container_cpus,
        context=json.loads(args.context_json),
    )


if __name__ == "__main__":
    sys.exit(main())
