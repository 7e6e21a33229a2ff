"""cdk-nag acknowledgments: each names one rule on one construct, with its reason."""

from typing import Any

from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_lambda as lambda_
from constructs import Construct


def acknowledge(construct: Construct, rule: str, reason: str) -> None:
    """One cdk-nag finding (one rule) on one construct, with its reason."""
    Validations.of(construct).acknowledge(Acknowledgment(id=rule, reason=reason))


def acknowledge_object_arn(function: lambda_.Function, object_arn: str, reason: str) -> None:
    """AwsSolutions-IAM5 flags each object ARN with a '*': one acknowledgment per ARN and policy (the function's
    role's)."""
    acknowledge(
        function.role.node.find_child("DefaultPolicy"),
        f"AwsSolutions::AwsSolutions-IAM5[Resource::{_nag_resource(function, object_arn)}]",
        reason,
    )


def _nag_resource(scope: Construct, arn: str) -> str:
    """An ARN as cdk-nag names it in a finding: a Ref becomes <Name>, a GetAtt <LogicalId.Attribute>."""

    def name(part: Any) -> str:
        if isinstance(part, str):
            return part
        if "Ref" in part:
            return f"<{part['Ref']}>"
        return "<{}.{}>".format(*part["Fn::GetAtt"])

    resolved = Stack.of(scope).resolve(arn)
    parts = resolved["Fn::Join"][1] if isinstance(resolved, dict) and "Fn::Join" in resolved else [resolved]
    return "".join(map(name, parts))
