"""Typed input errors of the reconstruction library.

Each error says, in words a surveyor or a drone operator understands, what is wrong with the
survey given and what to do about it. The service turns a :class:`ReconInputError` into a
failed (or partly failed) job with ``str(error)`` as the reason; any other exception is a bug
on our side.
"""

from __future__ import annotations


class ReconInputError(ValueError):
    """The input cannot be processed; the message explains why and what to do."""

    #: a short stable code for logs, metrics and API clients
    code = "invalid_input"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self):  # keep the subclass when raised in a worker process
        return (type(self), (self.message,))


class EmptySurveyError(ReconInputError):
    code = "empty"


class InvalidPointsError(ReconInputError):
    code = "invalid_points"


class NoGroundError(ReconInputError):
    code = "no_ground"
