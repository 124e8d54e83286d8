"""The one error type for bad input (data, schema, arguments): the CLI maps it to exit 2."""


class InputError(ValueError):
    """Input a person must fix; the message names the file, row and column where it can."""
