"""``python -m deforum_wan ui``: the Wan tab and the /wan_api routes without a WebUI.

One FastAPI app on the installed gradio (3.41, 4.x or 6.x): the API routes first, the
tab mounted at ``/``, the render queue in a worker subprocess.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from .args import add_output_args

# uvicorn's own limits: an idle keep-alive connection closes after 5 s, a request's headers
# (anything h11 has not yet parsed into an event) may not exceed 16 KiB, and at most 200
# connections are served at once (503 past that). A body that stalls is ended by the guard
# (service.guard.BODY_IDLE_SECONDS); uvicorn has no timeout for headers sent slowly.
SERVER_LIMITS = {"timeout_keep_alive": 5, "h11_max_incomplete_event_size": 16 * 1024, "limit_concurrency": 200}


def add_ui_command(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("ui", help="serve the Wan tab and the /wan_api routes in a browser")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1); another"
                   " than a loopback one needs --auth, the tab's login (or --no-auth)")
    p.add_argument("--port", type=int, default=7870, help="port (default: 7870)")
    p.add_argument("--auth", metavar="USER:PASS[,USER:PASS]", default=os.environ.get("DEFORUM_WAN_AUTH"),
                   help="log in to the tab and the API with these (HTTP basic for /wan_api/; a password"
                        " cannot hold a comma; default: $DEFORUM_WAN_AUTH)")
    p.add_argument("--api-token", default=os.environ.get("DEFORUM_WAN_API_TOKEN"),
                   help="also admit API calls with 'Authorization: Bearer TOKEN'; not a login for the tab"
                        " (default: $DEFORUM_WAN_API_TOKEN)")
    p.add_argument("--no-auth", action="store_true",
                   help="serve a non-loopback --host without authentication (anyone who reaches it can render)")
    add_output_args(p)
    p.add_argument("--keep-warm", action="store_true",
                   help="keep the model loaded in the worker between jobs (faster, holds VRAM)")
    p.add_argument("--worker-python", default=sys.executable, metavar="PYTHON",
                   help="interpreter that runs the render worker (default: this one); lets the UI run"
                   " on a light gradio-only environment while renders use one with torch (its ffmpeg reads"
                   " the tab's videos where this one has no imageio-ffmpeg)")
    p.set_defaults(func=cmd_ui)
    return p


def _worker_env() -> dict:
    """The worker imports deforum_wan from this checkout even when its interpreter lacks it."""
    scripts = str(Path(__file__).resolve().parents[2])  # scripts/, above deforum_wan/cli/
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (scripts, env.get("PYTHONPATH", "")) if p)
    return env


def build_app(manager, *, outdir: str | os.PathLike, guard=None):
    """The FastAPI app: /wan_api routes plus the tab at /, all behind one GuardMiddleware.
    ``guard`` (service.guard.Guard): who may call; its credentials also log in to the tab
    (gradio's login), its token admits API calls only."""
    import gradio as gr
    from fastapi import FastAPI

    from ..service.api import PREFIX, mount_api
    from ..service.guard import Guard, install_guard
    from ..service.jobstore import JOBS_DB
    from ..webui.gradio_compat import GRADIO_MAJOR, component_kwargs
    from ..webui.tab_layout import CSS, build_ui

    guard = guard or Guard.from_env()
    demo = build_ui(manager)
    demo.queue()  # gradio 3 polls with every=, which needs the queue
    app = FastAPI()
    mount_api(app, manager, guard=guard)
    out = Path(outdir).expanduser().resolve()
    users = list(guard.credentials.items()) or None
    # The result video and previews live in the output folder: gradio serves them, never the
    # job database beside them.
    kwargs = component_kwargs(gr.mount_gradio_app, allowed_paths=[str(out)], blocked_paths=[str(out / JOBS_DB.parent)],
                              auth=users, css=CSS if GRADIO_MAJOR >= 6 else None)
    if users and "auth" not in kwargs:  # gradio 3.41: mount_gradio_app reads the Blocks' own
        demo.auth, demo.auth_message = users, None
    if "blocked_paths" not in kwargs:  # gradio 3.41 reads both lists from the Blocks
        demo.allowed_paths = [*(getattr(demo, "allowed_paths", None) or []), str(out)]
        demo.blocked_paths = [*(getattr(demo, "blocked_paths", None) or []), str(out / JOBS_DB.parent)]
    app = gr.mount_gradio_app(app, demo, path="/", **kwargs)
    # gradio checks that a file an event names is an upload only in an app it launched itself:
    # mounted, it would copy any server file a request names into its upload folder.
    demo.has_launched = True
    # Host, Origin and CORS for every route, gradio's included; the API's auth here, the tab's
    # by gradio's login above.
    install_guard(app, guard, auth_prefixes=(PREFIX + "/",))
    return app


def cmd_ui(args) -> int:
    import uvicorn

    from ..errors import WanError
    from ..render.loop import check_outdir
    from ..service.console import ConsoleLog
    from ..service.guard import Guard, check_token, is_loopback, parse_credentials
    from ..service.jobs import JobManager
    from ..webui.gradio_compat import component_kwargs

    guard = Guard.from_env(credentials=parse_credentials(args.auth or None, "--auth"),
                           token=check_token(args.api_token, "--api-token"))
    if not is_loopback(args.host) and not guard.credentials and not args.no_auth:
        token = " (--api-token admits API calls, it is no login for the tab)" if guard.token else ""
        raise WanError(f"--host {args.host} lets other machines in: give --auth USER:PASS{token} (or --no-auth"
                       " to serve it open)")
    check_outdir(args.outdir)  # fail in seconds on an unusable folder
    if args.worker_python != sys.executable:  # the tab reads videos with the worker's ffmpeg if it has none
        from ..config import ffmpeg

        ffmpeg.set_fallback(lambda: ffmpeg.binary_of_python(args.worker_python))
    from ..service.jobstore import jobs_db_path

    db = jobs_db_path(args.outdir)
    db.parent.mkdir(parents=True, exist_ok=True)
    manager = JobManager(db, args.outdir, models_dir=args.models_dir, keep_warm=args.keep_warm,
                         python=args.worker_python, env=_worker_env())
    manager.subscribe(ConsoleLog(manager, sys.stderr))
    # uvicorn stops serving on SIGTERM, then raises the signal again: leave through ``finally``
    # (the running job stopped and recorded as interrupted, the worker closed), not killed.
    signal.signal(signal.SIGTERM, _terminate)
    try:
        app = build_app(manager, outdir=args.outdir, guard=guard)
        print(f"Wan tab on http://{args.host}:{args.port}/ (API under /wan_api/)", file=sys.stderr, flush=True)
        # gradio 3 keeps its polling websockets open forever: bound the graceful shutdown.
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning",
                    **component_kwargs(uvicorn.Config.__init__, timeout_graceful_shutdown=5, **SERVER_LIMITS))
    finally:
        manager.shutdown()
    return 0


def _terminate(signum, frame) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """``python -m deforum_wan.cli.ui`` (the same as ``python -m deforum_wan ui``)."""
    parser = argparse.ArgumentParser(prog="python -m deforum_wan.cli.ui")
    add_ui_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["ui", *(sys.argv[1:] if argv is None else argv)])
    from ..errors import WanError

    try:
        return args.func(args)
    except WanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
