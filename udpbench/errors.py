"""Errors a user can act on. The CLI prints them as one line and exits non-zero, never a traceback."""


import errno as _errno


def errno_name(code: int) -> str:
    """``EMSGSIZE`` for 90: how errors are named in rows and messages."""
    return _errno.errorcode.get(code, str(code))


class UserError(Exception):
    """Bad input or a situation the user must fix (exit 2): the message says what and how."""

    exit_code = 2


class MeasurementError(Exception):
    """A measurement could not be completed (exit 1): server gone, protocol error, timeout."""

    exit_code = 1
