"""User-facing errors: the CLI prints their message on one line and exits with code 2."""


class BpnetError(Exception):
    """An error caused by the user's input (a file, a flag, a spec), not by a bug.

    The message must name the file and, where there is one, the field at fault.
    """


class SpecError(BpnetError):
    """A spec file that cannot be loaded: bad syntax, unknown key, wrong type or value."""
