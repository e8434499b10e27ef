"""``python -m deforum_wan ui``: the Wan tab and the /wan_api routes without a WebUI.

One FastAPI app on the installed gradio (3.41, 4.x or 6.x): the API routes first, the
tab mounted at ``/``, the render queue in a worker subprocess.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .args import add_output_args


def add_ui_command(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("ui", help="serve the Wan tab and the /wan_api routes in a browser")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=7870, help="port (default: 7870)")
    add_output_args(p)
    p.add_argument("--keep-warm", action="store_true",
                   help="keep the model loaded in the worker between jobs (faster, holds VRAM)")
    p.add_argument("--worker-python", default=sys.executable, metavar="PYTHON",
                   help="interpreter that runs the render worker (default: this one); lets the UI run"
                   " on a light gradio-only environment while renders use one with torch")
    p.set_defaults(func=cmd_ui)
    return p


def _worker_env() -> dict:
    """The worker imports deforum_wan from this checkout even when its interpreter lacks it."""
    scripts = str(Path(__file__).resolve().parents[2])  # scripts/, above deforum_wan/cli/
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (scripts, env.get("PYTHONPATH", "")) if p)
    return env


def build_app(manager, *, outdir: str | os.PathLike):
    """The FastAPI app: /wan_api routes plus the tab at /."""
    import gradio as gr
    from fastapi import FastAPI

    from ..service.api import mount_api
    from ..webui.gradio_compat import GRADIO_MAJOR, component_kwargs
    from ..webui.tab import CSS, build_ui

    demo = build_ui(manager)
    demo.queue()  # gradio 3 polls with every=, which needs the queue
    app = FastAPI()
    mount_api(app, manager)
    # The result video and previews live in the output folder: let gradio serve them.
    kwargs = component_kwargs(gr.mount_gradio_app, allowed_paths=[str(Path(outdir).expanduser().resolve())],
                              css=CSS if GRADIO_MAJOR >= 6 else None)
    return gr.mount_gradio_app(app, demo, path="/", **kwargs)


def cmd_ui(args) -> int:
    import uvicorn

    from ..render.loop import check_outdir
    from ..service.jobs import JobManager
    from ..webui.gradio_compat import component_kwargs

    check_outdir(args.outdir)  # fail in seconds on an unusable folder
    from ..service.jobstore import jobs_db_path

    db = jobs_db_path(args.outdir)
    db.parent.mkdir(parents=True, exist_ok=True)
    manager = JobManager(db, args.outdir, models_dir=args.models_dir, keep_warm=args.keep_warm,
                         python=args.worker_python, env=_worker_env())
    try:
        app = build_app(manager, outdir=args.outdir)
        print(f"Wan tab on http://{args.host}:{args.port}/ (API under /wan_api/)", file=sys.stderr, flush=True)
        # gradio 3 keeps its polling websockets open forever: bound the graceful shutdown.
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning",
                    **component_kwargs(uvicorn.Config.__init__, timeout_graceful_shutdown=5))
    finally:
        manager.shutdown()
    return 0


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
