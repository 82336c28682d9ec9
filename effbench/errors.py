"""The one exception type whose message is shown to users as-is, without a traceback."""


class EffbenchError(Exception):
    """Bad input or a broken artifact, described in words the user can act on."""
