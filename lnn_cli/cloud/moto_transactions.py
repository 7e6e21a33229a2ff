"""moto's TransactWriteItems, rolled back by the items it touches instead of by a copy of every table.

moto deep-copies each table a transaction names before it starts, to restore it if the transaction is canceled:
a cost in the size of the table, not of the transaction (a 99-item transaction took minutes once the table held
a thousand epoch items). The trainer writes its epoch items in such transactions (`RunTable.put_epoch_items`),
so the embedded AWS and the in-process tests install this: the same transaction, with a snapshot of the items
its actions name (an item at most 400 KB), restored on any failure. Answers are unchanged.
"""

import copy
from typing import Any

from moto.dynamodb import models

_original = models.DynamoDBBackend.transact_write_items


class _TablesUncopied:
    """What moto's transaction sees as the `copy` module: its table snapshot becomes the table itself (this
    module's own snapshot of the touched items does the rollback); every other copy is a real one."""

    @staticmethod
    def deepcopy(value: Any, memo: Any = None) -> Any:
        return value if isinstance(value, models.Table) else copy.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


def install(enabled: bool = True) -> bool:
    """Replace moto's `transact_write_items` (or, with `enabled=False`, put moto's own back). Returns whether the
    replacement was installed before, so that a caller can restore that."""
    was = installed()
    models.copy = _TablesUncopied() if enabled else copy
    models.DynamoDBBackend.transact_write_items = _transact_write_items if enabled else _original
    return was


def installed() -> bool:
    return models.DynamoDBBackend.transact_write_items is _transact_write_items


def _transact_write_items(self, transact_items: list[dict[str, Any]]) -> None:
    snapshot = [_snapshot(self, action) for action in transact_items]
    try:
        _original(self, transact_items)
    except BaseException:
        for table_name, key, item in reversed([taken for taken in snapshot if taken is not None]):
            _restore(self, table_name, key, item)
        raise


def _snapshot(backend, action: dict[str, Any]):
    """(table name, key, a copy of the item or None) of one action; None when moto will refuse it anyway."""
    try:
        _, operation = next(iter(action.items()))
        table = backend.get_table(operation["TableName"])
        if "Key" in operation:
            key = operation["Key"]
        else:
            key = {name: operation["Item"][name] for name in (table.hash_key_attr, table.range_key_attr) if name}
        item = backend.get_item(operation["TableName"], key)
    except Exception:
        return None
    return operation["TableName"], key, copy.deepcopy(item)


def _restore(backend, table_name: str, key: dict[str, Any], item) -> None:
    table = backend.get_table(table_name)
    if item is None:
        if backend.get_item(table_name, key) is not None:
            backend.delete_item(table_name, key)
    elif table.range_key_attr:
        table.items[item.hash_key][item.range_key] = item
    else:
        table.items[item.hash_key] = item
