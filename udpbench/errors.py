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


class ServerAbsent(UserError):
    """Nothing answers where udpbench was pointed.

    ``where`` is the server's address and port as text, ``port`` the port, ``reason`` why:
    ``"refused"`` (nothing listens), ``"timeout"`` (no answer in time) or ``"unreachable"``
    (the network said no). The message names values only; the command line adds how to start
    a server there.
    """

    def __init__(self, message: str, where: str = "", port: int = 0, reason: str = "unreachable"):
        super().__init__(message)
        self.where, self.port, self.reason = where, port, reason


class TokenRequired(UserError):
    """The server requires a token and none was given; ``where`` is the server as text."""

    def __init__(self, where: str):
        super().__init__(f"{where}: server requires a token")
        self.where = where


class LabState(UserError):
    """The lab ``prefix`` is not in the state asked for; ``fix`` is the lab action that would
    put it there (``"up"`` or ``"down"``), and ``default_prefix`` whether the prefix is the default."""

    def __init__(self, message: str, prefix: str, fix: str, default_prefix: bool):
        super().__init__(message)
        self.prefix, self.fix, self.default_prefix = prefix, fix, default_prefix
