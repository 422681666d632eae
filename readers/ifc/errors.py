"""The one error of IFC reading: the input cannot be used, with a reason a user can act on."""


class IfcInputError(ValueError):
    """A file or request that cannot be ingested; the message is shown to the user as is."""
