"""The clients the handlers get: moto (direct or through boto3), with lost answers and the monitor's taps, and the
invoker through which Lambda accepts their events."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lnn_cli.simulate.aws import direct_clients
from lnn_cli.simulate.aws.world import REGION
from lnn_cli.simulate.deliveries import event_name
from lnn_cli.simulate.interleaving import lost_answer

if TYPE_CHECKING:
    from lnn_cli.simulate.containers import Container
    from lnn_cli.simulate.simulator import Simulator


WRITES = {
    "dynamodb": ("put_item", "update_item", "delete_item", "batch_write_item", "transact_write_items"),
    "s3": ("put_object", "delete_objects", "copy_object"),
    "sns": ("publish",),
}


class SimSession:
    """What `handlers.build_*(session=...)` gets: clients whose writes go through `_write` (lost answers, the
    monitor's record of applied writes), direct or through boto3 (`Simulator.mode`)."""

    region_name = REGION

    def __init__(self, sim: Simulator, container: Container):
        self._sim, self._container = sim, container

    def resource(self, service: str, config=None):
        assert service == "dynamodb", service
        if self._sim.mode == "boto":
            resource = self._sim.world.session.resource("dynamodb", config=config)
            return _ResourceProxy(self._sim, resource)
        return _ResourceProxy(
            self._sim,
            direct_clients.DirectDynamoResource(
                direct_clients.DirectDynamoClient(self._sim.tokens, self._sim.requests)
            ),
        )

    def client(self, service: str, config=None):
        if self._sim.mode == "boto":
            inner = self._sim.world.session.client(service, config=config)
        else:
            inner = {"s3": direct_clients.DirectS3Client, "sns": direct_clients.DirectSnsClient}[service](
                self._sim.world
            )
        return _ClientProxy(self._sim, inner, service)


class _ClientProxy:
    def __init__(self, sim: Simulator, inner, service: str):
        self._sim, self._inner, self._service = sim, inner, service

    def __getattr__(self, name: str):
        attribute = getattr(self._inner, name)
        if name in WRITES.get(self._service, ()):
            return lambda **params: _write(self._sim, self._service, name, attribute, params)
        return attribute


class _TableProxy(_ClientProxy):
    def __init__(self, sim: Simulator, table, client_proxy):
        super().__init__(sim, table, "dynamodb")
        self.meta = _Meta(client_proxy)
        self.name = table.name


class _Meta:
    def __init__(self, client):
        self.client = client


class _ResourceProxy:
    def __init__(self, sim: Simulator, resource):
        self._sim, self._resource = sim, resource
        self.meta = _Meta(_ClientProxy(sim, resource.meta.client, "dynamodb"))

    def Table(self, name: str):
        return _TableProxy(self._sim, self._resource.Table(name), self.meta.client)


def _write(sim: Simulator, service: str, operation: str, call, params: dict[str, Any]):
    """One write request. With a lost answer, it is applied, its answer lost, and the SDK sends it again: the
    second answer (or error) is the caller's. The monitor sees every applied write."""
    where = f"{service}.{operation}"
    if service == "dynamodb" and operation == "transact_write_items":
        params = {**params, "ClientRequestToken": params.get("ClientRequestToken") or direct_clients._next_token()}
    attempts = 2 if lost_answer(sim, where) else 1
    if attempts == 2 and service == "sns":
        sim.monitor.lost_publish()
    for attempt in range(attempts):
        before = sim.monitor.before_write(service, operation, params)
        try:
            answer = call(**params)
        except Exception:
            if attempt + 1 == attempts:
                raise
            continue
        sim.monitor.after_write(service, operation, params, before)
        if attempt + 1 < attempts:
            sim.log(f"answer lost: {where} (applied; the SDK retries)")
            sim.now += 0.05
    return answer


class SimInvoker:
    """The `Invoker` of a container: Lambda accepts the event (an SDK retry after a lost answer sends it again,
    with a new request id) and the scheduler delivers it."""

    def __init__(self, sim: Simulator, container: Container):
        self._sim, self._container = sim, container

    def invoke_async(self, payload: dict[str, Any]) -> None:
        origin = self._sim.current.label() if self._sim.current else f"c{self._container.number}"
        self._sim.monitor.invoked()
        if lost_answer(self._sim, f"lambda.invoke {event_name(payload)}"):
            self._sim.send("trainer", payload, origin=f"{origin} (answer lost, SDK retries)")
        self._sim.send("trainer", payload, origin=origin)
