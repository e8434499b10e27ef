"""HTTP routes under ``/wan_api/`` on an existing FastAPI app (the WebUI's or the
standalone UI's): queue renders, follow them, plan without a GPU, list models.

Handlers take a plain ``Request`` and return ``JSONResponse``: no pydantic models, so
the same code runs on A1111's FastAPI 0.94 (pydantic 1) and current FastAPI
(pydantic 2). Errors are ``{"error": "<one line>"}`` with 400 (not JSON), 404
(unknown job), 409 (nothing to resume), 413 (too large), 422 (bad shape or
settings) or 503 (busy checking other plans and submissions, or a check too long).
The output folder is the manager's; no request names a path to write.

    POST /wan_api/jobs              {"settings": {...}, "name": "..."}
                                    or {"batch": [{"settings": {...}, "name": "..."}, ...]}
                                    -> {"jobs": [id, ...]}
    GET  /wan_api/jobs              -> {"jobs": [job, ...], "state": {...}}
    GET  /wan_api/jobs/{id}         -> job
    POST /wan_api/jobs/{id}/cancel  -> {"cancelled": bool, "job": job}
    POST /wan_api/jobs/{id}/resume  -> {"jobs": [new id]}
    GET  /wan_api/jobs/{id}/video   -> the mp4;  /preview -> the latest frame (png);
                                    /drift -> the finished render's drift chart (png)
    POST /wan_api/interrupt | /wan_api/skip | /wan_api/start -> {"ok": bool, "state": {...}}
    POST /wan_api/plan              {"settings": {...}} -> the clip plan and, under "memory", each
                                    model's parts and bytes from its headers (no GPU)
    GET  /wan_api/models            -> {"models_dir": ..., "models": [...]}
"""
from __future__ import annotations

import asyncio
import json
import logging

from ..config.memory_plan import memory_json, memory_parts
from ..config.settings import MAX_FILE_BYTES
from ..errors import SettingsError, WanError, describe_error, one_line
from ..models.weights import registry_rows
from ..render.inputs import find_inside
from ..render.job import JobSpec, check_job
from .guard import Guard, Refused, install_guard, read_json_body
from .jobstore import JobNotFound, StoreUnavailable

log = logging.getLogger(__name__)
PREFIX = "/wan_api"
MAX_BODY_BYTES = MAX_FILE_BYTES + 1024 * 1024  # one settings file and its wrapping
MAX_BATCH = 1000
# Plans and submissions are checked (check_job) in threads, at most CHECKS_AT_ONCE at a time so
# a flood of heavy schedules cannot take every thread the other routes need; one that waits for
# its turn or runs longer than PLAN_SECONDS is answered 503.
PLAN_SECONDS = 20.0
CHECKS_AT_ONCE = 2
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _error(status: int, message: str, headers: dict | None = None):
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


# OpenAPI request bodies (the handlers read raw requests, so FastAPI cannot infer them).
_ITEM = {"type": "object", "required": ["settings"], "additionalProperties": False,
         "properties": {"settings": {"type": "object", "description": "Deforum settings (wan_* keys included)"},
                        "name": {"type": "string", "maxLength": 200}}}
SUBMIT_SCHEMA = {"oneOf": [_ITEM, {"type": "object", "required": ["batch"], "additionalProperties": False,
                                   "properties": {"batch": {"type": "array", "minItems": 1, "maxItems": MAX_BATCH,
                                                            "items": _ITEM}}}]}
PLAN_SCHEMA = _ITEM
_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _openapi(path: str, body: dict | None) -> dict | None:
    extra: dict = {}
    if body is not None:
        extra["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if "{job_id}" in path:
        extra["parameters"] = [_JOB_ID]
    return extra or None


async def _json_body(request) -> object:
    body = await read_json_body(request, MAX_BODY_BYTES)
    try:
        return json.loads(body.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise Refused(400, "request body is not UTF-8 JSON") from None
    except RecursionError:
        raise Refused(400, "request body JSON is nested too deeply") from None
    except ValueError as exc:
        raise Refused(400, f"request body is not JSON: {exc}") from None


def _check_keys(obj: dict, allowed: tuple[str, ...], where: str) -> None:
    # Unknown keys are refused rather than ignored: e.g. an "outdir" would otherwise look
    # accepted while the manager's output folder is used.
    extra = sorted(str(k) for k in obj if k not in allowed)
    if extra:
        raise Refused(422, f"{where}: unknown field {extra[0]!r} (allowed: {', '.join(allowed)})")


def _settings_of(item: object, where: str) -> tuple[str, dict]:
    if not isinstance(item, dict):
        raise Refused(422, f"{where} must be a JSON object")
    _check_keys(item, ("settings", "name"), where)
    settings = item.get("settings")
    if not isinstance(settings, dict):
        raise Refused(422, f"{where} needs \"settings\": a JSON object of Deforum settings")
    name = item.get("name", "")
    if name is None:
        name = ""
    if not isinstance(name, str) or len(name) > 200:
        raise Refused(422, f"{where}: \"name\" must be a string of at most 200 characters")
    return name, settings


def _submission(body: object) -> list[tuple[str, dict]]:
    if not isinstance(body, dict):
        raise Refused(422, "expected a JSON object with \"settings\" or \"batch\"")
    if "batch" in body:
        batch = body["batch"]
        if "settings" in body:
            raise Refused(422, "give either \"settings\" or \"batch\", not both")
        _check_keys(body, ("batch",), "the request")
        if not isinstance(batch, list) or not batch:
            raise Refused(422, "\"batch\" must be a non-empty list of {\"settings\": ..., \"name\": ...}")
        if len(batch) > MAX_BATCH:
            raise Refused(422, f"\"batch\" holds {len(batch)} jobs; at most {MAX_BATCH}")
        return [_settings_of(item, f"batch item {i + 1}") for i, item in enumerate(batch)]
    return [_settings_of(body, "the request")]


def mount_api(app, manager, *, prefix: str = PREFIX, dependencies=None,  # noqa: C901 (one nested handler per route)
              guard: Guard | None = None) -> None:
    """Add the routes to ``app``. Mounting again (a UI reload) replaces the old ones.

    ``dependencies``: FastAPI ``Depends(...)`` list applied to every route. ``guard``: who may
    call (auth, Host, Origin, CORS; guard.py), put in front of ``prefix`` as a middleware; by
    default loopback names and same-origin pages, plus what the environment allows. A caller
    that guards the whole app (the standalone UI) installs its own over this one.
    """
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import FileResponse, JSONResponse

    prefix = prefix.rstrip("/")
    install_guard(app, guard or Guard.from_env(), prefixes=(prefix + "/",), file_folders=(str(manager.outdir),))
    app.router.routes[:] = [r for r in app.router.routes
                            if not str(getattr(r, "path", "")).startswith(prefix + "/")]
    served: dict[str, list[str]] = {}

    def route(path: str, methods: list[str], body: dict | None = None):
        def register(handler):
            async def endpoint(request):
                try:
                    return await handler(request)
                except Refused as exc:
                    return _error(exc.status, str(exc), exc.headers)
                except JobNotFound as exc:
                    return _error(404, str(exc))
                except StoreUnavailable as exc:
                    return _error(503, one_line(exc).removeprefix("error: "))
                except SettingsError as exc:
                    return _error(422, str(exc))
                except WanError as exc:
                    return _error(409, " ".join(str(exc).split()))
                except Exception as exc:  # a bug: one line, never a traceback page
                    log.exception("wan_api %s", path)
                    return _error(500, f"internal error: {describe_error(exc)}")

            # FastAPI reads the signature: a single parameter annotated Request.
            from starlette.requests import Request

            endpoint.__annotations__ = {"request": Request}
            endpoint.__name__ = f"wan_api_{handler.__name__}"
            app.add_api_route(prefix + path, endpoint, methods=methods, openapi_extra=_openapi(path, body),
                              dependencies=list(dependencies or []), name=endpoint.__name__)
            served.setdefault(path, []).extend(methods)
            return handler
        return register

    def job_id(request) -> str:
        return str(request.path_params["job_id"])

    check_slots = asyncio.Semaphore(CHECKS_AT_ONCE)

    async def bounded(fn, *args, too_long: str):
        """``fn(*args)`` in a thread within the check budget, or Refused(503)."""
        try:
            await asyncio.wait_for(check_slots.acquire(), PLAN_SECONDS)
        except asyncio.TimeoutError:
            raise Refused(503, "the server is busy checking other plans and submissions; try again",
                          {"Retry-After": "5"}) from None
        # In a thread, so the event loop serves every other route meanwhile; its slot is free
        # only when the thread is, so runaway checks cannot pile up.
        future = asyncio.ensure_future(run_in_threadpool(fn, *args))
        future.add_done_callback(lambda f: (check_slots.release(), f.cancelled() or f.exception()))
        try:
            return await asyncio.wait_for(asyncio.shield(future), PLAN_SECONDS)
        except asyncio.TimeoutError:
            raise Refused(503, f"{too_long} took longer than {PLAN_SECONDS:g} s (a very long or heavy schedule);"
                               " plan it with: python -m deforum_wan plan FILE") from None

    @route("/jobs", ["POST"], SUBMIT_SCHEMA)
    async def submit(request):
        items = _submission(await _json_body(request))
        # Checked first within the budget (render.job); queued only once that answered in time.
        checked = await bounded(manager.check_batch, items, too_long="checking the submission")
        return JSONResponse({"jobs": await run_in_threadpool(manager.queue_checked, checked)})

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
        path = find_inside(job.get(key) or "", [manager.outdir])
        if path is None or path.suffix.lower() != {"video/mp4": ".mp4", "image/png": ".png"}[media_type]:
            raise Refused(404, f"job {job['id']} has no {key} yet")
        return FileResponse(str(path), media_type=media_type, filename=path.name)

    @route("/jobs/{job_id}/video", ["GET"])
    async def video(request):
        return await _file(request, "video", "video/mp4")

    @route("/jobs/{job_id}/preview", ["GET"])
    async def preview(request):
        return await _file(request, "preview", "image/png")

    @route("/jobs/{job_id}/drift", ["GET"])
    async def drift_chart(request):
        return await _file(request, "drift_chart", "image/png")

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

    @route("/plan", ["POST"], PLAN_SCHEMA)
    async def plan(request):
        name, settings = _settings_of(await _json_body(request), "the request")
        return JSONResponse(await bounded(_plan_json, manager, settings, name, too_long="planning"))

    @route("/models", ["GET"])
    async def models(request):
        return JSONResponse(await run_in_threadpool(registry_rows, manager.models_dir))

    for path, methods in served.items():  # a known path with a wrong method: 405, not the UI's 404
        app.add_api_route(prefix + path, _wrong_method(", ".join(methods)), include_in_schema=False,
                          methods=[m for m in METHODS if m not in methods], name=f"wan_api_405_{path}")


def _wrong_method(allowed: str):
    from starlette.requests import Request

    async def wrong_method(request):
        return _error(405, f"{request.method} is not allowed here (use {allowed})", {"Allow": allowed})

    wrong_method.__annotations__ = {"request": Request}  # resolved here, not from a string
    return wrong_method


def _plan_json(manager, settings: dict, name: str) -> dict:
    """The plan of the job a submission of these settings would queue: the same check."""
    checked = check_job(JobSpec(settings, name or ""), manager.outdir, models_dir=manager.models_dir)
    # what each model will hold, as ``plan --json`` has it (the weight files' headers only)
    return {**checked.plan.to_json(),
            "memory": memory_json(memory_parts(checked.settings, manager.models_dir, plan=checked.plan))}
