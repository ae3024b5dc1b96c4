"""The one exception type that the CLI turns into a single line on stderr and a non-zero exit."""


class UserError(Exception):
    """Bad input from the user (a file, an option, a model): the message names what and where."""
