"""Every door of the server behind the one guard (service.guard.GuardMiddleware), on a real
uvicorn with httpx: the standalone UI's gradio routes (the page, its config, the queue a
job is submitted through) and ``/wan_api/``, each tried with a foreign Host, a foreign
Origin, a foreign origin's CORS preflight, and missing or wrong credentials. Each hostile
request is checked against the same request made properly, which gets through."""
from __future__ import annotations

import base64
from types import SimpleNamespace

import pytest

fastapi = pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
pytest.importorskip("gradio")

from helpers import Served  # noqa: E402

from deforum_wan.cli.ui import build_app  # noqa: E402
from deforum_wan.service.api import mount_api  # noqa: E402
from deforum_wan.service.guard import (  # noqa: E402
    CredentialsError,
    Guard,
    check_token,
    parse_credentials,
    parse_credentials_file,
)
from deforum_wan.webui.api_login import api_guard  # noqa: E402
from deforum_wan.webui.gradio_compat import GRADIO_MAJOR  # noqa: E402

PLAN = {"settings": {"max_frames": 12, "prompts": {"0": "a"}, "wan_model": "tiny-random"}}
FOREIGN_HOST = "evil.example"
FOREIGN_ORIGINS = ("http://evil.example", "http://localhost:1", "null")  # gradio's CORS admitted localhost ones
API = "/gradio_api" if GRADIO_MAJOR >= 5 else ""
QUEUE = f"{API}/queue/join" if GRADIO_MAJOR >= 4 else "/run/predict"  # gradio 3 queues over a websocket


@pytest.fixture(scope="module")
def manager(idle_manager):
    return idle_manager


def refused_by_guard(response, status: int = 403) -> bool:
    """The guard's own answer: its status, its one-line JSON error, no CORS grant."""
    return (response.status_code == status and "error" in response.json()
            and "access-control-allow-origin" not in response.headers)


def gradio_doors(client) -> list[tuple[str, str, dict | None]]:
    """(method, path, json) of the tab's gradio routes; the queue call is the tab's Interrupt."""
    config = client.get("/config").json()
    dependencies = config["dependencies"]
    fn_index = next(i for i, d in enumerate(dependencies) if d.get("api_name") == "interrupt")
    call = {"data": [], "fn_index": fn_index, "session_hash": "guardtest", "event_data": None, "trigger_id": None}
    return [("GET", "/", None), ("GET", "/config", None), ("POST", QUEUE, call)]


def api_doors() -> list[tuple[str, str, dict | None]]:
    return [("GET", "/wan_api/jobs", None), ("POST", "/wan_api/jobs", PLAN), ("POST", "/wan_api/plan", PLAN)]


def send(client, method, path, body, headers=None, **kwargs):
    return client.request(method, path, json=body, headers=headers or {}, **kwargs)


def test_an_open_loopback_ui_refuses_foreign_hosts_and_origins_at_every_door(manager, tmp_path):
    with Served(build_app(manager, outdir=tmp_path)) as served, httpx.Client(base_url=served.url, timeout=60) as http:
        doors = gradio_doors(http) + api_doors()
        for method, path, body in doors:
            assert send(http, method, path, body).status_code == 200, (method, path)  # the door opens
            assert send(http, method, path, body, {"origin": served.url}).status_code == 200, (method, path)
            for host in (FOREIGN_HOST, f"{FOREIGN_HOST}:{served.port}"):
                assert refused_by_guard(send(http, method, path, body, {"host": host})), (method, path, host)
            for origin in FOREIGN_ORIGINS:
                r = send(http, method, path, body, {"origin": origin})
                assert refused_by_guard(r), (method, path, origin, r.status_code, r.headers)
                preflight = http.options(path, headers={"origin": origin, "access-control-request-method": "POST"})
                assert refused_by_guard(preflight), (path, origin)


def test_a_login_guards_every_door_and_a_foreign_origin_is_refused_even_logged_in(manager, tmp_path):
    guard = Guard.from_env(credentials=parse_credentials("ann:pw,bob:pass:word"), token="tök-en")
    with Served(build_app(manager, outdir=tmp_path, guard=guard)) as served, \
            httpx.Client(base_url=served.url, timeout=60) as http:
        # The API: HTTP basic or the token, anything else 401 (a non-ASCII token too, never a 500).
        for method, path, body in api_doors():
            for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": "Bearer tök-fn".encode()},
                            {"authorization": "Basic " + base64.b64encode(b"ann:wrong").decode()},
                            {"authorization": "Basic " + base64.b64encode(b"\xff\xfe:pw").decode()},
                            {"authorization": "Basic !!"}, {"authorization": b"Bearer \xff"}):
                r = send(http, method, path, body, headers)
                assert refused_by_guard(r, 401) and r.headers["www-authenticate"].startswith("Basic"), (path, headers)
            assert send(http, method, path, body, auth=("ann", "pw")).status_code == 200
            assert send(http, method, path, body, auth=("bob", "pass:word")).status_code == 200
            assert send(http, method, path, body, {"authorization": "Bearer tök-en".encode()}).status_code == 200
            assert refused_by_guard(send(http, method, path, body, {"host": FOREIGN_HOST}, auth=("ann", "pw")))
            assert refused_by_guard(send(http, method, path, body, {"origin": FOREIGN_ORIGINS[1]}, auth=("ann", "pw")))

        # The tab: gradio's login; the token is no login for it.
        assert http.get("/config").status_code == 401
        assert http.get("/config", headers={"authorization": "Bearer tök-en".encode()}).status_code == 401
        assert http.post("/login", data={"username": "ann", "password": "wrong"}).status_code in (400, 401)
        assert http.post("/login", data={"username": "ann", "password": "pw"}).status_code == 200
        for method, path, body in gradio_doors(http):  # logged in (the cookie): a foreign page still cannot
            assert send(http, method, path, body).status_code == 200, (method, path)
            for origin in FOREIGN_ORIGINS:
                assert refused_by_guard(send(http, method, path, body, {"origin": origin})), (path, origin)
            assert refused_by_guard(send(http, method, path, body, {"host": FOREIGN_HOST})), path
        http.cookies.clear()
        call = {"data": [], "fn_index": 0, "session_hash": "guardtest"}
        assert http.post(QUEUE, json=call).status_code == 401  # no job through the queue without the login


def test_only_an_allowed_origin_gets_cors_and_with_credentials(manager, tmp_path, monkeypatch):
    monkeypatch.setenv("DEFORUM_WAN_ALLOWED_ORIGINS", "https://wan.example")
    with Served(build_app(manager, outdir=tmp_path)) as served, httpx.Client(base_url=served.url, timeout=60) as http:
        for method, path, body in gradio_doors(http) + api_doors():
            r = send(http, method, path, body, {"origin": "https://wan.example"})
            assert r.status_code == 200, (path, r.status_code)
            assert r.headers["access-control-allow-origin"] == "https://wan.example"
            assert r.headers["access-control-allow-credentials"] == "true"
            preflight = http.options(path, headers={"origin": "https://wan.example",
                                                    "access-control-request-method": "POST"})
            assert preflight.status_code == 204 and "POST" in preflight.headers["access-control-allow-methods"]
            same_site = send(http, method, path, body)  # no Origin: no CORS grant from gradio either
            assert not any(k.startswith("access-control-") for k in same_site.headers), path


@pytest.mark.parametrize("text, flag, problem", [
    ("admin:s3cr3t,XYZ", "--api-auth", "item 2 has no ':'"),
    ("bob:", "--auth", "item 1 has an empty user or password"),
    (":pw", "--auth", "item 1 has an empty user or password"),
    ("ann:pw,", "--gradio-auth", "item 2 is empty"),
    ("ann:pw,,bob:x", "--gradio-auth", "item 2 is empty"),
    ("ann:pw,ann:other", "--auth", "names user 'ann' a second time"),
    ("", "--auth", "item 1 is empty"),
])
def test_credentials_are_read_strictly_in_one_line_naming_the_flag(text, flag, problem):
    with pytest.raises(CredentialsError) as error:
        parse_credentials(text, flag)
    message = str(error.value)
    assert message.startswith(f"{flag} takes USER:PASS") and problem in message and "\n" not in message
    assert "s3cr3t" not in message  # never echoes a password


@pytest.mark.parametrize("token", [" ", "tok en", "tok\t", "\x00tok"])
def test_a_blank_or_spaced_token_is_refused(token):
    with pytest.raises(CredentialsError, match="^--api-token must be one word"):
        check_token(token)


def test_a_credentials_file_is_read_line_by_line_and_strictly(tmp_path):
    good = tmp_path / "auth.txt"
    good.write_text("ann:pw, bob:x\n\ncarl:y\n", encoding="utf-8")
    assert parse_credentials_file(good) == {"ann": "pw", "bob": "x", "carl": "y"}
    bad = tmp_path / "bad.txt"
    bad.write_text("ann:pw\ncarl\n", encoding="utf-8")
    with pytest.raises(CredentialsError, match="^--gradio-auth-path takes USER:PASS .*line 2 item 1 has no ':'"):
        parse_credentials_file(bad)
    with pytest.raises(CredentialsError, match="^--gradio-auth-path: cannot read"):
        parse_credentials_file(tmp_path / "missing.txt")


@pytest.mark.parametrize("flags", ["api_auth", "gradio_auth", "gradio_auth_path"])
def test_each_webui_login_flag_guards_wan_api_on_a_running_webui_app(flags, manager, tmp_path):
    """As in a WebUI: the app already serves (its middleware stack built) when app_started
    mounts /wan_api/; the login the WebUI was given, whichever flag, guards it."""
    logins = tmp_path / "logins.txt"
    logins.write_text("ann:pw\n", encoding="utf-8")
    opts = SimpleNamespace(api=True, api_auth=None, gradio_auth=None, gradio_auth_path=None)
    setattr(opts, flags, str(logins) if flags == "gradio_auth_path" else "ann:pw")
    app = fastapi.FastAPI()

    @app.get("/sdapi/v1/ping")
    def ping():
        return {"ok": True}

    with Served(app) as served, httpx.Client(base_url=served.url, timeout=60) as http:
        assert http.get("/sdapi/v1/ping").status_code == 200  # started: the stack is built
        mount_api(app, manager, guard=api_guard(opts))
        for method, path, body in api_doors():
            assert refused_by_guard(send(http, method, path, body), 401), (flags, path)
            assert refused_by_guard(send(http, method, path, body, auth=("ann", "nope")), 401), (flags, path)
            assert send(http, method, path, body, auth=("ann", "pw")).status_code == 200, (flags, path)
            assert refused_by_guard(send(http, method, path, body, {"host": FOREIGN_HOST}, auth=("ann", "pw")))
            assert refused_by_guard(send(http, method, path, body, {"origin": FOREIGN_ORIGINS[0]},
                                         auth=("ann", "pw")))
        assert http.get("/sdapi/v1/ping").status_code == 200  # the WebUI's own routes are its own business


def test_the_webui_api_login_wins_and_a_bad_one_names_its_flag(tmp_path):
    both = SimpleNamespace(api_auth="api:key", gradio_auth="ann:pw", gradio_auth_path=None)
    assert api_guard(both).credentials == {"api": "key"}
    logins = tmp_path / "logins.txt"
    logins.write_text("ann:other\n", encoding="utf-8")
    clash = SimpleNamespace(api_auth=None, gradio_auth="ann:pw", gradio_auth_path=str(logins))
    with pytest.raises(CredentialsError, match="^--gradio-auth-path names user 'ann' with another password"):
        api_guard(clash)
    with pytest.raises(CredentialsError, match="^--api-auth takes USER:PASS"):
        api_guard(SimpleNamespace(api_auth="admin:s3cr3t,XYZ"))
    assert not api_guard(SimpleNamespace()).needs_auth  # no login given: loopback Host/Origin checks only
