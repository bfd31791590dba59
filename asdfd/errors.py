"""Errors that are the user's to fix; the CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """A problem with the user's input, with a message that names the problem and the fix."""
