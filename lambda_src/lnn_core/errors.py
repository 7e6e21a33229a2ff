"""The two kinds of error LNN tells apart: bad input from a person, and a run that cannot go on."""


class LnnInputError(ValueError):
    """Bad input (parameters, data, an event): the message names the problem and, where there is one, the fix."""


class RunFailure(Exception):
    """A run cannot continue (corrupt state, non-finite data, a diverging cost): it is marked failed with this reason."""
