"""The one exception type that means "the user must fix something".

The CLI prints a ``UserError`` as a single line on stderr and exits with status 2;
any other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input, bad settings or a missing resource; the message says what to do."""
