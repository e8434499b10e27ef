"""HTTP routes under ``/wan_api/`` on an existing FastAPI app (the WebUI's or the
standalone UI's): queue renders, follow them, plan without a GPU, list models.

Handlers take a plain ``Request`` and return ``JSONResponse``: no pydantic models, so
the same code runs on A1111's FastAPI 0.94 (pydantic 1) and current FastAPI
(pydantic 2). Errors are ``{"error": "<one line>"}`` with 400 (not JSON), 404
(unknown job), 409 (nothing to resume), 413 (too large) or 422 (bad shape or
settings). The output folder is the manager's; no request names a path to write.

    POST /wan_api/jobs              {"settings": {...}, "name": "..."}
                                    or {"batch": [{"settings": {...}, "name": "..."}, ...]}
                                    -> {"jobs": [id, ...]}
    GET  /wan_api/jobs              -> {"jobs": [job, ...], "state": {...}}
    GET  /wan_api/jobs/{id}         -> job
    POST /wan_api/jobs/{id}/cancel  -> {"cancelled": bool, "job": job}
    POST /wan_api/jobs/{id}/resume  -> {"jobs": [new id]}
    GET  /wan_api/jobs/{id}/video   -> the mp4;  /preview -> the latest frame (png)
    POST /wan_api/interrupt | /wan_api/skip | /wan_api/start -> {"ok": bool, "state": {...}}
    POST /wan_api/plan              {"settings": {...}} -> the clip plan (no GPU)
    GET  /wan_api/models            -> {"models_dir": ..., "models": [...]}
"""
from __future__ import annotations

import json
from pathlib import Path

from ..config.settings import MAX_FILE_BYTES, init_image_of, soundtrack_of
from ..errors import SettingsError, WanError
from ..models.weights import registry_rows, resolve_models_dir
from .jobstore import JobNotFound

PREFIX = "/wan_api"
MAX_BODY_BYTES = MAX_FILE_BYTES + 1024 * 1024  # one settings file and its wrapping
MAX_BATCH = 1000


class _HTTPError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _error(status: int, message: str):
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status)


async def _json_body(request) -> object:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _HTTPError(413, f"request body is larger than {MAX_BODY_BYTES // 2**20} MB")
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise _HTTPError(413, f"request body is larger than {MAX_BODY_BYTES // 2**20} MB")
    try:
        return json.loads(body.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise _HTTPError(400, "request body is not UTF-8 JSON") from None
    except RecursionError:
        raise _HTTPError(400, "request body JSON is nested too deeply") from None
    except ValueError as exc:
        raise _HTTPError(400, f"request body is not JSON: {exc}") from None


def _check_keys(obj: dict, allowed: tuple[str, ...], where: str) -> None:
    # Unknown keys are refused rather than ignored: e.g. an "outdir" would otherwise look
    # accepted while the manager's output folder is used.
    extra = sorted(str(k) for k in obj if k not in allowed)
    if extra:
        raise _HTTPError(422, f"{where}: unknown field {extra[0]!r} (allowed: {', '.join(allowed)})")


def _settings_of(item: object, where: str) -> tuple[str, dict]:
    if not isinstance(item, dict):
        raise _HTTPError(422, f"{where} must be a JSON object")
    _check_keys(item, ("settings", "name"), where)
    settings = item.get("settings")
    if not isinstance(settings, dict):
        raise _HTTPError(422, f"{where} needs \"settings\": a JSON object of Deforum settings")
    name = item.get("name", "")
    if name is None:
        name = ""
    if not isinstance(name, str) or len(name) > 200:
        raise _HTTPError(422, f"{where}: \"name\" must be a string of at most 200 characters")
    return name, settings


def _confine_input_files(settings: dict, root: Path, where: str) -> None:
    """A request may only read input files (init image, soundtrack) from the output
    folder, never arbitrary files of the server; relative names are taken from there."""
    # The files the render will read, by the rules load_settings reads them with.
    for key, value in (("init_image", init_image_of(settings)), ("soundtrack_path", soundtrack_of(settings))):
        if value is None or "://" in value:
            continue  # unused, or a URL (refused with its own message at render time)
        path = Path(str(value))
        found = _inside(str(path if path.is_absolute() else root / path), root.resolve())
        if found is None:
            raise _HTTPError(422, f"{where}: {key} must name an existing file inside the output folder")
        settings[key] = str(found)


def _confine_loras(settings: dict, roots: list[Path], where: str) -> None:
    """LoRA files named by a request must lie in the models folder or the output folder
    (relative names are looked up there), so a request cannot probe the server's files."""
    def place(value, key: str) -> str:
        path = Path(str(value))
        for root in roots:
            found = _inside(str(path if path.is_absolute() else root / path), root.resolve())
            if found is not None:
                return str(found)
        raise _HTTPError(422, f"{where}: {key} must name a .safetensors file in the models or output folder")

    loras = settings.get("wan_loras")
    if isinstance(loras, list):
        settings["wan_loras"] = [
            place(item, "wan_loras") if isinstance(item, str)
            else {**item, "path": place(item["path"], "wan_loras")}
            if isinstance(item, dict) and isinstance(item.get("path"), str) else item
            for item in loras]
    distill = settings.get("wan_distill_lora")
    if isinstance(distill, str) and distill.strip().lower() not in ("", "auto", "off"):
        settings["wan_distill_lora"] = place(distill, "wan_distill_lora")


def _submission(body: object) -> list[tuple[str, dict]]:
    if not isinstance(body, dict):
        raise _HTTPError(422, "expected a JSON object with \"settings\" or \"batch\"")
    if "batch" in body:
        batch = body["batch"]
        if "settings" in body:
            raise _HTTPError(422, "give either \"settings\" or \"batch\", not both")
        _check_keys(body, ("batch",), "the request")
        if not isinstance(batch, list) or not batch:
            raise _HTTPError(422, "\"batch\" must be a non-empty list of {\"settings\": ..., \"name\": ...}")
        if len(batch) > MAX_BATCH:
            raise _HTTPError(422, f"\"batch\" holds {len(batch)} jobs; at most {MAX_BATCH}")
        return [_settings_of(item, f"batch item {i + 1}") for i, item in enumerate(batch)]
    return [_settings_of(body, "the request")]


def _inside(path: str | None, root: Path) -> Path | None:
    if not path:
        return None
    try:  # ValueError: a NUL or a lone surrogate; OSError: a name too long
        p = Path(path).resolve()
        p.relative_to(root)
        return p if p.is_file() else None
    except (OSError, ValueError):
        return None


def mount_api(app, manager, *, prefix: str = PREFIX, dependencies=None) -> None:  # noqa: C901 (one nested handler per route)
    """Add the routes to ``app``. Mounting again (a UI reload) replaces the old ones.

    ``dependencies``: FastAPI ``Depends(...)`` list applied to every route (e.g. the
    host's API authentication).
    """
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import FileResponse, JSONResponse

    prefix = prefix.rstrip("/")
    app.router.routes[:] = [r for r in app.router.routes
                            if not str(getattr(r, "path", "")).startswith(prefix + "/")]

    def route(path: str, methods: list[str]):
        def register(handler):
            async def endpoint(request):
                try:
                    return await handler(request)
                except _HTTPError as exc:
                    return _error(exc.status, str(exc))
                except JobNotFound as exc:
                    return _error(404, str(exc))
                except SettingsError as exc:
                    return _error(422, str(exc))
                except WanError as exc:
                    return _error(409, " ".join(str(exc).split()))

            # FastAPI reads the signature: a single parameter annotated Request.
            from starlette.requests import Request

            endpoint.__annotations__ = {"request": Request}
            endpoint.__name__ = f"wan_api_{handler.__name__}"
            app.add_api_route(prefix + path, endpoint, methods=methods,
                              dependencies=list(dependencies or []), name=endpoint.__name__)
            return handler
        return register

    def job_id(request) -> str:
        return str(request.path_params["job_id"])

    @route("/jobs", ["POST"])
    async def submit(request):
        items = _submission(await _json_body(request))
        for i, (_, settings) in enumerate(items):
            _confine_input_files(settings, Path(manager.outdir), f"job {i + 1}")
            _confine_loras(settings, [resolve_models_dir(manager.models_dir), Path(manager.outdir)],
                           f"job {i + 1}")
        ids = await run_in_threadpool(manager.submit_batch, items)
        return JSONResponse({"jobs": ids})

    @route("/jobs", ["GET"])
    async def list_jobs(request):
        jobs = await run_in_threadpool(manager.list)
        return JSONResponse({"jobs": jobs, "state": manager.state()})

    @route("/jobs/{job_id}", ["GET"])
    async def get_job(request):
        return JSONResponse(await run_in_threadpool(manager.get, job_id(request)))

    @route("/jobs/{job_id}/cancel", ["POST"])
    async def cancel(request):
        done = await run_in_threadpool(manager.cancel, job_id(request))
        return JSONResponse({"cancelled": done, "job": manager.get(job_id(request))})

    @route("/jobs/{job_id}/resume", ["POST"])
    async def resume(request):
        return JSONResponse({"jobs": [await run_in_threadpool(manager.resume, job_id(request))]})

    async def _file(request, key: str, media_type: str):
        job = await run_in_threadpool(manager.get, job_id(request))
        path = _inside(job.get(key), manager.outdir)
        if path is None:
            raise _HTTPError(404, f"job {job['id']} has no {key} yet")
        return FileResponse(str(path), media_type=media_type, filename=path.name)

    @route("/jobs/{job_id}/video", ["GET"])
    async def video(request):
        return await _file(request, "video", "video/mp4")

    @route("/jobs/{job_id}/preview", ["GET"])
    async def preview(request):
        return await _file(request, "preview", "image/png")

    for action in ("interrupt", "skip", "start"):
        def make(action=action):
            async def control(request):
                method = {"interrupt": manager.interrupt, "skip": manager.skip,
                          "start": manager.start_queue}[action]
                ok = await run_in_threadpool(method)
                return JSONResponse({"ok": ok is not False, "state": manager.state()})
            control.__name__ = action
            return control
        route(f"/{action}", ["POST"])(make())

    @route("/plan", ["POST"])
    async def plan(request):
        from ..config.planner import make_plan
        from ..config.settings import load_settings

        name, settings = _settings_of(await _json_body(request), "the request")
        result = make_plan(load_settings(settings, name=name or None))
        return JSONResponse(result.to_json())

    @route("/models", ["GET"])
    async def models(request):
        return JSONResponse(await run_in_threadpool(registry_rows, manager.models_dir))
