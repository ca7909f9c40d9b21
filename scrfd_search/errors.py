"""The one exception type that reaches the user as a one-line message."""


class UserError(Exception):
    """Bad input or an impossible request; the CLI prints it on one line and exits non-zero."""


def check_seed(seed: int, flag: str = "--seed") -> None:
    """Seeds feed numpy and torch generators, which take 0 to 2**32 - 1."""
    if not 0 <= seed < 2**32:
        raise UserError(f"{flag}: {seed} must be between 0 and {2**32 - 1}")
