"""The one exception tree of the platform.

Every error that can reach a user derives from :class:`NiiError` and carries a
``fix``: one sentence that tells the user what to do about it. The command line
prints ``error: <message>`` and ``fix: <fix>`` and exits with status 2; no
traceback reaches a user.
"""

from __future__ import annotations


class NiiError(Exception):
    """Base of every error the platform raises on purpose."""

    exit_code = 2

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return self.message


class ConfigError(NiiError):
    """A configuration file or option is missing, malformed or inconsistent."""


class KeyFileError(ConfigError):
    """A key file is missing, unreadable or of the wrong kind."""


class DriverError(NiiError):
    """A device could not be reached or answered outside its protocol."""


class ProtocolError(NiiError):
    """Bytes on a link or a message did not follow the protocol."""


class IntegrityError(NiiError):
    """A sealed block failed verification: signature, chain, sequence or cipher."""

    def __init__(self, message: str, fix: str = "", *, reason: str = "integrity") -> None:
        super().__init__(message, fix)
        self.reason = reason


class EnrollmentError(NiiError):
    """An edge is not enrolled, or was revoked, at the central aggregator."""


class SpoolFullError(NiiError):
    """The edge spool reached its bound; new scans are refused until it drains."""


class StorageError(NiiError):
    """A durable store (CIR, spool, ATR store) could not write: disk full or I/O error.

    Attributes:
        path: The file or folder that could not be written.
        free_bytes: Free space at ``path`` in bytes when the error was raised,
            or -1 when it could not be read.
    """

    def __init__(
        self, message: str, fix: str = "", *, path: str = "", free_bytes: int = -1
    ) -> None:
        super().__init__(message, fix)
        self.path = path
        self.free_bytes = free_bytes
