#!/usr/bin/env python3
"""Entry point of `cdk synth` / `cdk deploy` (see cdk.json). Context parameters: README.md, "Context parameters"."""

import sys

from lnn_stack.application import create_app
from lnn_stack.settings.context import ContextError


def main() -> int:
    try:
        app, stack = create_app()
    except ContextError as error:
        print(error, file=sys.stderr)  # the message says what to fix; a traceback would only bury it
        return 2
    if warning := stack.deployment.unsubscribed_warning:
        print(warning, file=sys.stderr)
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
