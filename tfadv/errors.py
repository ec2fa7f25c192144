"""Errors for bad user input: the CLIs print them as one line and exit non-zero."""


class UserInputError(ValueError):
    """A flag, file, dataset or value given by the user is unusable."""


class DataError(UserInputError):
    """A dataset cannot be found, read or parsed."""
