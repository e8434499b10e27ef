"""WebUI installer hook (run at every launch): the Wan worker's libraries into .wan-packages.

Thin on purpose: the choices live in scripts/deforum_wan/webui/hostdeps.py. A no-op when the
marker there matches this WebUI (its Python, torch, numpy) and our pins; the first install says
in the console what it does, package by package.
"""
import os
import subprocess
import sys
from pathlib import Path

EXTENSION = Path(__file__).resolve().parent
sys.path.insert(0, str(EXTENSION / "scripts"))

from deforum_wan.webui import hostdeps  # noqa: E402  (stdlib only)


def main() -> int:
    try:
        line = hostdeps.ensure_installed(EXTENSION, python=sys.executable, python_version=sys.version_info[:3],
                                         host=hostdeps.host_versions(),
                                         index_url=os.environ.get("INDEX_URL") or None)
    except hostdeps.HostDepsError as exc:
        print(f"deforum-wan: {exc}")
        return 1
    except subprocess.CalledProcessError as exc:
        print(f"deforum-wan: pip failed (exit code {exc.returncode}); the Wan worker's libraries are not"
              " installed; the next launch tries again")
        return 1
    if line:
        print(f"deforum-wan: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
