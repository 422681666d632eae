"""Typed input errors of the tilers.

Each error says, in words a drone operator or a surveyor understands, what is wrong with the
file they gave and what to do about it. The service turns any :class:`TilerInputError` into a
failed job with ``str(error)`` as the reason (an HTTP 4xx where it answers directly); any
other exception is a bug on our side.
"""

from __future__ import annotations


class TilerInputError(ValueError):
    """The input cannot be tiled; the message explains why to the person who uploaded it."""

    #: a short stable code for logs, metrics and API clients
    code = "invalid_input"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self):  # keep the subclass when raised in a worker process
        return (type(self), (self.message,))


class NotPointCloudError(TilerInputError):
    code = "not_las"


class TruncatedFileError(TilerInputError):
    code = "truncated"


class CorruptFileError(TilerInputError):
    code = "corrupt"


class EmptyInputError(TilerInputError):
    code = "empty"


class PointCountMismatchError(TilerInputError):
    code = "point_count_mismatch"


class MissingCrsError(TilerInputError):
    code = "missing_crs"


class InvalidCrsError(TilerInputError):
    code = "invalid_crs"


class ImpossibleCoordinatesError(TilerInputError):
    code = "impossible_coordinates"


class InvalidGeometryError(TilerInputError):
    """Meshes: geometry that cannot be triangulated or placed (used by the mesh tiler)."""

    code = "invalid_geometry"
