"""Context parameters: `cdk deploy -c key=value` (or cdk.json, or CDK_CONTEXT_JSON), validated at synth time.

Every key is parsed into typed, frozen settings that app.py hands down as keyword arguments; nothing else
reads context. A bad value stops synth with one `ContextError` that names the key, the value and what the
key accepts. How one key is read: context.py; the keys: deployment.py and training.py.
"""

import difflib
import re
from collections.abc import Mapping
from typing import Any

from lnn_stack.settings.context import ContextError
from lnn_stack.settings.deployment import DEPLOYMENT_PARAMETERS, DeploymentSettings
from lnn_stack.settings.training import TRAINING_PARAMETERS, TrainingDefaults

# LNN's keys are snake_case words; CDK's own keys have ':', '@', '/' or '-' (e.g. "cli-telemetry").
LNN_KEY_SHAPE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
KNOWN_KEYS = tuple(parameter.key for parameter in (*DEPLOYMENT_PARAMETERS.values(), *TRAINING_PARAMETERS.values()))


def settings_from_context(context: Mapping[str, Any]) -> tuple[DeploymentSettings, TrainingDefaults]:
    """Both settings from the app's context; raises `ContextError` on an unknown LNN-shaped key, a bad value, or a
    default `workers` the trainer's reserved concurrency could not run at once (the launcher would refuse it)."""
    for key in context:
        if LNN_KEY_SHAPE.match(key) and key not in KNOWN_KEYS:
            close = difflib.get_close_matches(key, KNOWN_KEYS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ContextError(f"Unknown context parameter {key!r}; {hint}known parameters: {', '.join(KNOWN_KEYS)}")
    deployment, training = DeploymentSettings.from_context(context), TrainingDefaults.from_context(context)
    reserved, workers = deployment.reserved_concurrency, training.workers
    if reserved is not None and workers is not None and workers > reserved:
        raise ContextError(
            f"Context parameter 'workers' ({workers}) is more than 'reserved_concurrency' ({reserved}): "
            f"the launcher would refuse every run that keeps this default. "
            f"Fix: cdk synth -c workers={reserved} or -c reserved_concurrency={workers}"
        )
    return deployment, training
