"""Adversarial review of issue 17's CLI: help that contradicts the feature, `-c` values that pass and break."""

import pytest

from lnn_cli.parser import build_parser
from lnn_core.errors import LnnInputError


def help_of(command: str) -> str:
    return build_parser()._subparsers._group_actions[0].choices[command].format_help()


def test_resume_help_says_it_continues_a_stopped_run():
    """Section 5 made `lnn resume` continue a stopped run, but its help (from the errors branch) still says only
    "re-send a stalled run's next step" / "Re-send a running run's next step": the issue's complaint that stop
    reads like pause and is not, now inverted."""
    text = " ".join(help_of("resume").split())
    assert "stopped" in text, text


def test_stop_help_says_the_run_keeps_its_model_and_can_be_resumed():
    text = " ".join(help_of("stop").split())
    assert "resume" in text and "model" in text, text


def test_a_context_stack_name_that_is_not_the_deployed_stack_is_refused_before_anything_starts():
    """`lnn up -c stack_name=Other` (or `lnn local`) passes deploy_context's validation, so the moto server starts
    and `cdk synth` names the app's stack Other; then `cdk deploy LnnStack` (--stack's default) finds no such stack:
    a DeployError (exit 1) after the whole synth. The pair should be refused in one line (or --stack follow it)."""
    from lnn_cli.cloud.deploy_context import deploy_context

    with pytest.raises(LnnInputError, match="stack"):
        deploy_context(["stack_name=Other"], command="lnn up")
