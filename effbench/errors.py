"""The one exception type whose message is shown to users as-is, and how any other failure is put in one line."""

import traceback


class EffbenchError(Exception):
    """Bad input or a broken artifact, described in words the user can act on."""


class NotApplicable(EffbenchError):
    """A technique cannot act on this model (its architecture has nothing the technique rewrites): a row, not a crash.

    Raised from ``Technique.preflight`` (before any work) or ``apply``; the sweep stores the run as
    ``not-applicable`` with this message and goes on with the other runs.
    """


def error_text(err: BaseException) -> str:
    """An exception as the line a failed run or a plugin load error stores: its type and message, no traceback."""
    return "".join(traceback.format_exception_only(type(err), err)).strip()
