"""`Observability`: the guard-rail alarms, which notify the topic, and the dashboard."""

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from lnn_stack.functions import POWERTOOLS_ENVIRONMENT

ALARM_PERIOD = Duration.minutes(5)
DASHBOARD_PERIOD = Duration.minutes(5)


class Observability:
    """Under `scope`: the trainer's invocations alarm (`invocations_alarm`), the dead-letter queue's alarm
    (`dead_letter_alarm`), both notifying the topic, and the dashboard (`dashboard`).

    Grants: a topic policy statement that lets cloudwatch.amazonaws.com publish for these two alarms only
    (aws:SourceArn), from this account only (aws:SourceAccount).
    """

    def __init__(
        self,
        scope: Construct,
        *,
        topic: sns.ITopic,
        trainer_function: lambda_.Function,
        predict_function: lambda_.Function | None,
        dead_letter_queue: sqs.Queue,
        invocation_alarm_threshold: int,
    ) -> None:
        self._scope = scope
        self.invocations_alarm = cloudwatch.Alarm(
            scope,
            "TrainerInvocationsAlarm",
            alarm_description=(
                "LNN guard rail: the trainer was invoked more often than expected, e.g. a run whose chain duplicates"
            ),
            metric=trainer_function.metric_invocations(period=ALARM_PERIOD, statistic="Sum"),
            threshold=invocation_alarm_threshold,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.dead_letter_alarm = cloudwatch.Alarm(
            scope,
            "DeadLetterAlarm",
            alarm_description=(
                "LNN guard rail: an event for the launcher or the watchdog, a watchdog run or an e-mail delivery "
                "failed and waits in the dead-letter queue (kept 14 days)"
            ),
            metric=dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=ALARM_PERIOD, statistic="Maximum"
            ),
            threshold=0,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self._notify_topic(topic, self.invocations_alarm, self.dead_letter_alarm)
        self.dashboard = self._create_dashboard(trainer_function, predict_function)

    def _notify_topic(self, topic: sns.ITopic, *alarms: cloudwatch.Alarm) -> None:
        """The alarms' actions, and the topic policy statement that lets CloudWatch publish for these alarms only.

        A topic policy replaces SNS's default policy, and the one `enforce_ssl` creates holds only the TLS deny:
        without this allow, CloudWatch could not publish the alarms. (An existing topic keeps its own policy,
        which must allow them.)
        """
        for alarm in alarms:
            alarm.add_alarm_action(cloudwatch_actions.SnsAction(topic))
        topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowLnnAlarmsToPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[topic.topic_arn],
                conditions={
                    "ArnEquals": {"aws:SourceArn": [alarm.alarm_arn for alarm in alarms]},
                    "StringEquals": {"aws:SourceAccount": Stack.of(self._scope).account},
                },
            )
        )

    def _alarm_by_name(self, alarm: cloudwatch.Alarm) -> cloudwatch.IAlarm:
        """The alarm with its ARN built from its name (a Ref): the emulator's CloudFormation has no Fn::GetAtt of an
        alarm."""
        arn = Stack.of(self._scope).format_arn(
            service="cloudwatch",
            resource="alarm",
            resource_name=alarm.alarm_name,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        return cloudwatch.Alarm.from_alarm_arn(self._scope, f"{alarm.node.id}ByName", arn)

    def _create_dashboard(
        self, trainer: lambda_.Function, predict_function: lambda_.Function | None
    ) -> cloudwatch.Dashboard:
        """The trainer's EMF metrics (Cost, Steps: namespace LNN, dimension service=lnn, as `Metrics` emits them),
        its errors, throttles and p99 duration, the invocations alarm, and the PredictLambda's invocations and
        errors."""

        def lnn_metric(name: str, statistic: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=POWERTOOLS_ENVIRONMENT["POWERTOOLS_METRICS_NAMESPACE"],
                metric_name=name,
                dimensions_map={"service": POWERTOOLS_ENVIRONMENT["POWERTOOLS_SERVICE_NAME"]},
                statistic=statistic,
                period=DASHBOARD_PERIOD,
            )

        dashboard = cloudwatch.Dashboard(self._scope, "Dashboard", default_interval=Duration.hours(3))
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Trainer cost (mean of the epochs' costs)",
                width=12,
                left=[lnn_metric("Cost", "Average")],
                right=[lnn_metric("Cost", "Minimum")],
            ),
            cloudwatch.GraphWidget(title="Trainer steps", width=12, left=[lnn_metric("Steps", "Sum")]),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Trainer errors and throttles",
                width=8,
                left=[
                    trainer.metric_errors(period=DASHBOARD_PERIOD, statistic="Sum"),
                    trainer.metric_throttles(period=DASHBOARD_PERIOD, statistic="Sum"),
                ],
            ),
            cloudwatch.GraphWidget(
                title="Trainer duration p99",
                width=8,
                left=[trainer.metric_duration(period=DASHBOARD_PERIOD, statistic="p99")],
            ),
            cloudwatch.AlarmWidget(
                title="Trainer invocations alarm", width=8, alarm=self._alarm_by_name(self.invocations_alarm)
            ),
        )
        if predict_function is not None:
            dashboard.add_widgets(
                cloudwatch.GraphWidget(
                    title="PredictLambda invocations and errors",
                    width=12,
                    left=[
                        predict_function.metric_invocations(period=DASHBOARD_PERIOD, statistic="Sum"),
                        predict_function.metric_errors(period=DASHBOARD_PERIOD, statistic="Sum"),
                    ],
                )
            )
        return dashboard
