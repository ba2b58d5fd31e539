"""Errors caused by user input (options, files, sizes). The command-line tools print them as one clear line."""


class UserInputError(Exception):
    """A problem with user-provided options, files or data, reported without a traceback by the CLIs."""
