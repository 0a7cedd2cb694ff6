"""The one exception type that means "the user must fix something".

The CLI prints a ``UserError`` as a single line on stderr and exits with status 2;
any other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input, bad settings or a missing resource; the message says what to do."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name if it has none): what
    a one-line error quotes of a library's multi-line message."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
