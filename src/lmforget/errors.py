"""One exception type for bad user input: the CLI turns it into one stderr line and exit code 2."""


class LmforgetError(Exception):
    """A problem with the user's input (file, field, row, option) that they can fix.

    The message must name what is wrong and, where possible, what to do about it.
    Anything else that escapes is a bug in lmforget and keeps its traceback.
    """
