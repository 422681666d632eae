"""Typed input errors of the reconstruction library.

Each error says, in words a surveyor or a drone operator understands, what is wrong with the
survey given and what to do about it. The service turns a :class:`ReconInputError` into a
failed (or partly failed) job with ``str(error)`` as the reason; any other exception is a bug
on our side.
"""

from __future__ import annotations

from tiler.errors import TilerInputError


class ReconInputError(TilerInputError):
    """The input cannot be processed; the message explains why and what to do. One kind of
    the tilers' input error (message, code, pickling across processes), so the service
    handles both the same way."""


class EmptySurveyError(ReconInputError):
    code = "empty"


class InvalidPointsError(ReconInputError):
    code = "invalid_points"


class NoGroundError(ReconInputError):
    code = "no_ground"
