"""moto's DynamoDB, remembered: a request's answer and the table it leaves are a function of the request and the
table's contents, so the exhaustive search asks moto once per (request, contents) and replays the rest.

Items are shared between the search's saved states and never changed in place once a request is done: before moto
runs a request it has not answered for these contents, every item is copied (moto changes the ones it writes in
place), and an item keeps the digest of its contents (`item_digest`) for the rest of its life.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

_DIGEST = "_lnn_digest"  # the attribute an item keeps its digest in (dropped from its copies)


def item_digest(item) -> bytes:
    """The digest of a moto item's contents, computed once per item."""
    found = item.__dict__.get(_DIGEST)
    if found is None:
        text = json.dumps(item.to_json(), sort_keys=True, default=str)
        found = item.__dict__[_DIGEST] = hashlib.blake2b(text.encode(), digest_size=16).digest()
    return found


def items_of(table) -> dict:
    """The table's items as a value: {partition key: {sort key: item}}, the items themselves shared."""
    return {partition: dict(by_range) for partition, by_range in table.items.items()}


def set_items(table, items: dict) -> None:
    """Give the table the items of `items_of` (copied as a value: the items themselves shared)."""
    table.items.clear()
    table.items.update({partition: dict(by_range) for partition, by_range in items.items()})


def contents_digest(table) -> bytes:
    parts = sorted(
        (partition.value, key.value, item_digest(item))
        for partition, by_range in table.items.items()
        for key, item in by_range.items()
    )
    return hashlib.blake2b(repr(parts).encode(), digest_size=16).digest()


class RequestMemo:
    def __init__(self, world):
        self.world = world
        self.known: dict[tuple, tuple[Any, BaseException | None, dict]] = {}
        self.hits = self.misses = 0

    def request(self, name: str, wire: dict[str, Any], run):
        """moto's answer to the request (`run()`), or its exception raised, with the table as it leaves it."""
        table = self.world.table
        shown = {field: value for field, value in wire.items() if field != "ClientRequestToken"}  # (see the client)
        key = (name, json.dumps(shown, sort_keys=True, default=str), contents_digest(table))
        found = self.known.get(key)
        if found is None:
            self.misses += 1
            before = items_of(table)
            _unshare(table)
            try:
                answer, error = run(), None
            except Exception as failure:  # moto's service error: the same one for the same request and contents
                answer, error = None, without_traceback(failure)
            found = self.known[key] = (answer, error, _sharing_unchanged(items_of(self.world.table), before))
        else:
            self.hits += 1
            set_items(table, found[2])
        if found[1] is not None:
            raise found[1]
        return found[0]


def _unshare(table) -> None:
    """Give the table copies of its items, without their digests: moto changes in place the items it writes."""
    for partition, by_range in list(table.items.items()):
        copies = {}
        for key, item in by_range.items():
            twin = copy.deepcopy(item)
            twin.__dict__.pop(_DIGEST, None)
            copies[key] = twin
        table.items[partition] = copies


def _sharing_unchanged(after: dict, before: dict) -> dict:
    """`after`, with each item that the request left as it was replaced by the item it was before (so that the
    saved answers and states share it)."""
    for partition, by_range in after.items():
        for key, item in by_range.items():
            old = before.get(partition, {}).get(key)
            if old is not None and item_digest(old) == item_digest(item):
                by_range[key] = old
    return after


def without_traceback(error: BaseException) -> BaseException:
    """The error (and those it was raised from), kept without its traceback: a kept traceback keeps every frame
    it passed through alive, and with them the search's saved states."""
    seen = error
    while seen is not None:
        seen.__traceback__ = None
        seen = seen.__context__ or seen.__cause__
    return error
