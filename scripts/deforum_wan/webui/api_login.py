"""Who may call ``/wan_api/`` inside a WebUI, read from the WebUI's own flags (A1111 v1.10 and
Forge parse them into ``shared.cmd_opts``): its API login ``--api-auth`` when given, else the
login of its page, ``--gradio-auth`` and the file ``--gradio-auth-path`` together.

The values are read strictly (service.guard): a malformed one is a CredentialsError naming
its flag, and the caller then serves no ``/wan_api/`` rather than an open one.
"""
from __future__ import annotations

from ..service.guard import CredentialsError, Guard, parse_credentials, parse_credentials_file


def api_guard(cmd_opts) -> Guard:
    """The guard of ``/wan_api/`` for these WebUI command-line options."""
    api_auth = getattr(cmd_opts, "api_auth", None)
    if api_auth:
        return Guard.from_env(credentials=parse_credentials(api_auth, "--api-auth"))
    credentials = parse_credentials(getattr(cmd_opts, "gradio_auth", None) or None, "--gradio-auth")
    path = getattr(cmd_opts, "gradio_auth_path", None)
    for user, password in (parse_credentials_file(path, "--gradio-auth-path") if path else {}).items():
        if credentials.setdefault(user, password) != password:
            raise CredentialsError(f"--gradio-auth-path names user {user!r} with another password than --gradio-auth")
    return Guard.from_env(credentials=credentials)
