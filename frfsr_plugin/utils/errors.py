"""Errors caused by user input (options, files, sizes). The command-line tools print them as one clear line.

Each also derives from the matching built-in exception, so callers may catch ``ValueError``, ``KeyError`` or
``FileNotFoundError`` as usual.
"""


class UserInputError(Exception):
    """A problem with user-provided options, files or data, reported without a traceback by the CLIs."""


class OptionError(UserInputError, ValueError):
    """An option has a bad value."""


class MissingOptionError(UserInputError, KeyError):
    """A required option is absent."""

    def __str__(self):  # KeyError would quote the message
        return str(self.args[0]) if self.args else ''


class MissingFileError(UserInputError, FileNotFoundError):
    """A file or folder named by the user does not exist."""


class BadFileError(UserInputError, ValueError):
    """A file exists but cannot be used (corrupt, unsupported format, malformed content)."""


class InputSizeError(UserInputError, ValueError):
    """An image or feature map has a size the network cannot process."""


class TrainingDivergedError(RuntimeError):
    """Training produced non-finite losses for too many consecutive iterations."""
