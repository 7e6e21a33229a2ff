"""moto's DynamoDB answers that carry items, written out as the JSON they already are.

moto 5 serializes an answer by walking the operation's output shape, and at every node of an item it looks up
each of an AttributeValue's ten members: reading a run record (42 attributes, two of them nested maps) took 10.6 ms
from the embedded AWS against 3.1 ms for a one-attribute item, and the trainer reads its run record several times a
step. The items moto answers with are already in DynamoDB's wire form (`{"S": "..."}`, numbers as strings), so an
answer of an item operation that moto's serializer would write unchanged (plain JSON, every key a member of the
output shape, no consumed capacity) is written out as it is, its keys in the shape's order; any other answer (an
error, bytes, a null, consumed capacity, which moto adds to every UpdateItem, BatchGetItem and DeleteItem answer)
goes through moto's serializer. The bodies are the same byte for byte
(`tests/unit/test_moto_items.py`); the embedded AWS and the in-process tests install this.
"""

import dataclasses
from typing import Any

from moto.dynamodb.responses import DynamoResult

# The operations whose answers are items and counts
ITEM_OPERATIONS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "PutItem", "UpdateItem", "DeleteItem"})
_PLAIN_SCALARS = (str, bool, int, float)
_MOTO_EXECUTE_RESULT = DynamoResult.execute_result  # moto's own (ActionResult's), put back by install(False)


def install(enabled: bool = True) -> bool:
    """Answer item operations as they are (or, with `enabled=False`, through moto's serializer only). Returns whether
    this was installed before, so that a caller can restore that."""
    was = installed()
    DynamoResult.execute_result = _execute_result if enabled else _MOTO_EXECUTE_RESULT
    return was


def installed() -> bool:
    return DynamoResult.execute_result is _execute_result


def _execute_result(self, context):
    return _MOTO_EXECUTE_RESULT(
        self, dataclasses.replace(context, serializer_class=_items_as_they_are(context.serializer_class))
    )


_SERIALIZERS: dict[type, type] = {}  # moto's serializer class -> its subclass below (a race builds an equal one)


def _items_as_they_are(serializer_class: type) -> type:
    """`serializer_class` (moto's JSON serializer for DynamoDB), answering item operations as they are."""
    if serializer_class not in _SERIALIZERS:

        class ItemsAsTheyAre(serializer_class):
            def _serialize_result(self, resp: dict, result: Any) -> dict:
                shape = self.operation_model.output_shape
                if self.operation_model.name in ITEM_OPERATIONS and _as_they_are(result, shape):
                    # the output shape's members in its order, as moto's serializer writes them
                    answer = {name: result[name] for name in shape.members if name in result}
                    return self._serialized_result_to_response(resp, result, shape, answer)
                return super()._serialize_result(resp, result)

        _SERIALIZERS[serializer_class] = ItemsAsTheyAre
    return _SERIALIZERS[serializer_class]


def _as_they_are(result: Any, shape) -> bool:
    """Whether moto's serializer would write `result` as it is: every key a member of the output shape, no consumed
    capacity (whose units it writes as floats) and only plain JSON values."""
    return (
        shape is not None
        and isinstance(result, dict)
        and set(result) <= set(shape.members)
        and "ConsumedCapacity" not in result
        and _plain(result)
    )


def _plain(value: Any) -> bool:
    """Whether `value` is JSON of strings, booleans, numbers, lists and objects (no null, bytes or timestamps,
    which moto's serializer drops or converts)."""
    if isinstance(value, dict):
        return all(isinstance(key, str) and _plain(item) for key, item in value.items())
    if isinstance(value, list):
        return all(_plain(item) for item in value)
    return isinstance(value, _PLAIN_SCALARS)
