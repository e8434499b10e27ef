"""Run inside a venv with the WebUI's gradio (see test_ui_gradio_versions.py): build the Wan
tab, mount it with the API on FastAPI, fetch the page and its config, exercise the handlers."""
import json
import sys
import tempfile
from pathlib import Path

import gradio as gr
from fastapi.testclient import TestClient

from deforum_wan.cli.ui import build_app
from deforum_wan.config.presets import PRESETS, resolve
from deforum_wan.config.settings import load_settings, read_settings_file
from deforum_wan.render.job import JobSpec, check_job
from deforum_wan.webui.fields import FIELDS, fields_to_settings, settings_to_fields
from deforum_wan.webui.tab_handlers import WanTab
from deforum_wan.webui.tab_layout import build_ui


class Manager:
    def __init__(self, outdir):
        self.outdir, self.models_dir, self.submitted = Path(outdir), None, []

    def check_batch(self, items):  # the real manager's check (render.job)
        return [check_job(JobSpec(settings, name), self.outdir, models_dir=self.models_dir) for name, settings in items]

    def queue_checked(self, checked):
        self.submitted.extend(job.spec.settings for job in checked)
        return ["job1" for _ in checked]

    def list(self):
        return []

    def state(self):
        return {}


def main(files):
    out = {"gradio": gr.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        manager = Manager(tmp)
        demo = build_ui(manager, deforum_prompts=dict)
        config = demo.get_config_file() if hasattr(demo, "get_config_file") else demo.config
        out["components"] = len(config["components"])
        out["dependencies"] = len(config["dependencies"])
        by_id = {comp["id"]: comp.get("props", {}) for comp in config["components"]}
        # Generate and Resume hand the page's task id (TASK_JS, spelled _js on 3.x) in first
        task = demo.wan_components["task"]._id
        out["task_js"] = sorted(
            [t[0] if isinstance(t, (list, tuple)) else t for t in dep.get("targets", [])][0]
            for dep in config["dependencies"]
            if "requestProgress" in str(dep.get("js") or "") and dep["inputs"][0] == task)
        out["unprompted_warnings"] = unprompted_warnings(demo, config)
        out["task_buttons"] = sorted([demo.wan_components["generate"]._id, demo.wan_components["resume"]._id])
        preset = by_id[demo.wan_components["preset"]._id]
        choices = [ch[0] if isinstance(ch, (list, tuple)) else ch for ch in preset.get("choices", [])]
        out["preset_choices"] = choices
        out["preset_info"] = all(f"{name}: " in (preset.get("info") or "") for name in PRESETS)
        out["gpus_value"] = by_id[demo.wan_components["gpus"]._id].get("value")
        db = Path(tmp) / ".deforum-wan" / "jobs.sqlite"  # where the hosts keep the queue
        db.parent.mkdir()
        db.write_bytes(b"the queue")
        client = TestClient(build_app(manager, outdir=tmp))
        out["page"] = client.get("/").status_code
        out["config"] = client.get("/config").status_code
        prefix = "/gradio_api/file=" if int(gr.__version__.split(".")[0]) >= 5 else "/file="
        out["db_served"] = b"the queue" in client.get(prefix + str(db)).content
        # The queue call carries no inputs: what counts is that the guard lets it through, not its answer.
        out["guarded"] = guarded(TestClient(client.app, base_url="http://127.0.0.1", raise_server_exceptions=False))
        tab = WanTab(manager)
        round_trips = 0
        for path in files:
            data = read_settings_file(path)
            back = fields_to_settings(settings_to_fields(data), data)
            assert {k: back[k] for k in data} == data, path
            load_settings(back)
            values = tab.field_values(data)
            table, view, status = tab.plan(*values, data, [])
            assert status.startswith(("plan:", "error:")) and "\n" not in status, status
            round_trips += 1
        out["round_trips"] = round_trips
        values = tab.field_values(tab.initial)
        queued = tab.generate(*values, tab.initial, [])
        assert queued == "queued job job1", queued
        # The preset and GPUs fields reach the settings; Memory at its defaults keeps the preset.
        values[FIELDS.index("preset")], values[FIELDS.index("gpus")] = "low-vram", 2.0
        # Two GPUs need a model whose windows all split across GPUs (VACE, the 1.3B's partner, does not).
        values[FIELDS.index("model")] = tab.field_values({**tab.initial, "wan_model": "wan2.1-t2v-14b"})[
            FIELDS.index("model")]
        queued = tab.generate(*values, tab.initial, [])
        assert queued == "queued job job1", queued
        s = load_settings(manager.submitted[-1])
        speed = resolve(s.preset, s.speed_overrides)
        out["preset_settings"] = [s.preset, s.gpus, speed["offload"], speed["vae_tiling"]]
        saved, status = tab.save_settings(*values, tab.initial)
        assert status.startswith("saved "), status
        out["poll"] = tab.poll({})[0]
        out["named_files"] = named_files(demo, Path(tmp))
    print(json.dumps(out))


def unprompted_warnings(demo, config) -> list:
    """The events the page fires by itself (on load, on a timer, the poll's button) that gradio
    4's client would warn about on each call, "Too many arguments provided for the endpoint":
    more inputs than the parameters it finds for the event. The page calls an event by its
    index and looks its parameters up among the API's unnamed endpoints (4.40 lists none)."""
    if not hasattr(demo, "get_api_info"):  # 3.x: its client has no such check
        return []
    unnamed = demo.get_api_info().get("unnamed_endpoints", {})
    elem = {comp["id"]: comp.get("props", {}).get("elem_id") for comp in config["components"]}
    found = []
    for index, dep in enumerate(config["dependencies"]):
        endpoint = unnamed.get(index) or unnamed.get(str(index)) or {}
        if len(dep["inputs"]) <= len(endpoint.get("parameters", [])):
            continue
        targets = [(elem.get(t[0]), t[1]) for t in dep.get("targets", []) if isinstance(t, (list, tuple))]
        if any(event in ("load", "tick") or target == "wan_poll" for target, event in targets):
            found.append([dep.get("api_name"), targets])
    return found


def named_files(demo, tmp: Path) -> dict:
    """What the file fields do with a raw value naming a server file (a request made by hand,
    not an upload): gradio 3 would copy it into its upload folder, so the tab refuses it before
    that; a file gradio itself received passes."""
    from deforum_wan.webui.gradio_compat import GRADIO_MAJOR, upload_folder

    if GRADIO_MAJOR >= 4:  # 4.x refuses a named file at its routes, before any preprocess
        return {}
    outside = tmp / "secret.json"
    outside.write_text("{}")
    inside = upload_folder() / "wan-check" / "received.json"
    inside.parent.mkdir(parents=True, exist_ok=True)
    inside.write_text("{}")
    found = {}
    for name in ("import", "soundtrack_upload"):
        component = demo.wan_components[name]
        for label, path in (("outside", outside), ("received", inside)):
            value = {"name": str(path), "is_file": True, "data": None, "orig_name": path.name}
            try:
                component.preprocess([value] if getattr(component, "file_count", "") == "multiple" else value)
                found[f"{name}_{label}"] = "read"
            except Exception as exc:  # the tab's gr.Error
                found[f"{name}_{label}"] = f"refused: {exc}"
    return found


def guarded(client) -> dict:
    """What a foreign Host or Origin gets from the page, its config and its queue (the guard's
    403), and what the page itself gets (through)."""
    from starlette.websockets import WebSocketDisconnect

    queue = "/run/predict" if int(gr.__version__.split(".")[0]) < 4 else "/queue/join"
    if int(gr.__version__.split(".")[0]) >= 5:
        queue = "/gradio_api" + queue
    call = {"data": [], "fn_index": 0, "session_hash": "guard"}
    found = {}
    for name, headers in (("foreign_host", {"host": "evil.example"}), ("foreign_origin", {"origin": "http://localhost:1"}),
                          ("own", {})):
        found[name] = [client.get("/", headers=headers).status_code, client.get("/config", headers=headers).status_code,
                       client.post(queue, json=call, headers=headers).status_code]
        if int(gr.__version__.split(".")[0]) < 4 and name != "foreign_host":  # gradio 3 queues over a websocket
            try:
                with client.websocket_connect("/queue/join", headers=headers) as ws:
                    found[name].append(ws.receive_json().get("msg"))  # gradio asks for the session
            except WebSocketDisconnect:
                found[name].append("refused")
    return found


if __name__ == "__main__":
    main(sys.argv[1:])
