"""Reading one context parameter: `Parameter`, the parsers that check a raw value, and `ContextError`.

`-c` values arrive as strings, cdk.json values as JSON, so parsers take both. A parser raises ValueError or
TypeError; `Parameter.read` turns that into one `ContextError` that names the key, the value and what the key
accepts. The parameters themselves are in deployment.py and training.py.
"""

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class ContextError(ValueError):
    """A context parameter is invalid. The message alone tells the user what to fix."""


@dataclass(frozen=True)
class Parameter:
    """One context key: its default, its parser (raises ValueError/TypeError) and, for the message, what it accepts."""

    key: str
    default: Any
    parse: Callable[[Any], Any]
    accepts: str
    example: str

    def read(self, context: Mapping[str, Any]) -> Any:
        raw = context.get(self.key)
        if raw is None:
            return self.default
        try:
            return self.parse(raw)
        except (ValueError, TypeError):
            raise self.error(raw) from None

    def error(self, raw: Any, accepts: str | None = None, example: str | None = None) -> ContextError:
        return ContextError(
            f"Context parameter {self.key!r} must be {accepts or self.accepts}; got {raw!r}. "
            f"Fix: cdk synth -c {self.key}={example or self.example}"
        )


def integer(low: int, high: int) -> Callable[[Any], int]:
    def parse(raw: Any) -> int:
        if isinstance(raw, bool) or not isinstance(raw, (int, str)):
            raise TypeError(raw)
        value = int(raw)  # "abc" and "1.5" raise ValueError
        if not low <= value <= high:
            raise ValueError(raw)
        return value

    return parse


def optional(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Unset by an empty string too, so that `-c key=` clears a value set in cdk.json."""
    return lambda raw: None if raw == "" else parse(raw)


def or_none(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """An explicit "none" (or an empty string) lifts a limit that is on by default."""
    return lambda raw: None if raw in ("", "none") else parse(raw)


def choice(options: Mapping[str, Any] | tuple[str, ...]) -> Callable[[Any], str]:
    def parse(raw: Any) -> str:
        if raw not in options:
            raise ValueError(raw)
        return raw

    return parse


def matching(pattern: re.Pattern) -> Callable[[Any], str]:
    def parse(raw: Any) -> str:
        if not isinstance(raw, str) or not pattern.match(raw):
            raise ValueError(raw)
        return raw

    return parse


def comma_list(item: Callable[[Any], Any]) -> Callable[[Any], tuple]:
    """ "20,7,5,1" from -c, or [20, 7, 5, 1] from cdk.json."""

    def parse(raw: Any) -> tuple:
        items = raw.split(",") if isinstance(raw, str) else raw
        if not isinstance(items, (list, tuple)) or not items:
            raise TypeError(raw)
        return tuple(item(value.strip() if isinstance(value, str) else value) for value in items)

    return parse


def boolean(raw: Any) -> bool:
    """true/false from -c (a string) or cdk.json (a JSON boolean)."""
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise ValueError(raw)


def word(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.isalpha():
        raise ValueError(raw)
    return raw
