"""`lnn serve`'s app served for a test: on 127.0.0.1 (a free port), in a thread."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def serving(stack) -> Iterator[str]:
    """Serve the app of `stack` (a DeployedStack) until the block ends; yields its base URL."""
    from werkzeug.serving import make_server

    from lnn_cli.web.app import create_app

    server = make_server("127.0.0.1", 0, create_app(stack), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)
