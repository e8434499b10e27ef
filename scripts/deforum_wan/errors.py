"""Errors meant for the user: one line, no traceback.

Everything the CLI, the tab and the worker report to a person is a ``WanError``;
anything else escaping is a bug and is shown with its traceback.
"""


class WanError(Exception):
    """A problem the user can fix; ``str()`` is the whole message."""


class SettingsError(WanError):
    """Bad settings file or value. ``source`` names the file (or '<settings>')."""

    def __init__(self, message: str, source: str = "<settings>"):
        super().__init__(f"{source}: {message}")
        self.source = source
        self.detail = message


class BackendError(WanError):
    """No backend could load or run the model; the message lists why for each."""


class Interrupted(WanError):
    """The user asked to stop; finished frames are kept."""
