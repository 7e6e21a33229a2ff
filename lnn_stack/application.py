"""The CDK app: context -> validated settings -> `LnnStack`, checked by cdk-nag's AwsSolutions and Serverless packs."""

from collections.abc import Mapping
from typing import Any

from aws_cdk import App, Validations
from cdk_nag import AwsSolutionsChecks, ServerlessChecks

from lnn_stack.lnn_stack import LnnStack
from lnn_stack.settings.from_context import settings_from_context


def create_app(context: Mapping[str, Any] | None = None, **app_props: Any) -> tuple[App, LnnStack]:
    """Build the app from its context (cdk.json, `-c`, CDK_CONTEXT_JSON, plus `context`); raises `ContextError`."""
    # No AWS::CDK::Metadata resource: it only reports library usage, and moto's CloudFormation lacks it.
    app = App(context=dict(context or {}), analytics_reporting=False, **app_props)
    deployment, training = settings_from_context(app.node.get_all_context())
    stack = LnnStack(app, deployment.stack_name, deployment=deployment, training=training)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app), ServerlessChecks(app))
    return app, stack
