"""The one exception type that reaches the user as a one-line message."""


class UserError(Exception):
    """Bad input or an impossible request; the CLI prints it on one line and exits non-zero."""
