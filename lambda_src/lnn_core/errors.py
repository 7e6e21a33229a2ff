"""The two kinds of error LNN tells apart: bad input from a person, and a run that cannot go on."""


class LnnInputError(ValueError):
    """Bad input (parameters, data, an event): the message names the problem and, where there is one, the fix."""


class RunFailure(Exception):
    """A run cannot continue (corrupt state, non-finite data, a diverging cost): it is marked failed with this
    reason."""


def shown(value, limit: int = 80) -> str:
    """A value for an error message, cut short (parameters can hold anything, even an int too long to print)."""
    try:
        text = repr(value)
    except ValueError:
        return f"a {type(value).__name__} too long to show"
    return text if len(text) <= limit else text[: limit - 1] + "…"
