"""Real Deforum files with 3D depth warping from the tab: what they need is said in the tab's
words, Download depth model fetches it (a tiny DPT served by the local hub-shaped server as the
repo Deforum's Midas-3-Hybrid stands for), and every real file previews and renders on the tiny
models, with its depth model or as a flat scene (Depth warping off)."""
from __future__ import annotations

import types

import pytest
from helpers import real_settings_files, wait_for, worker_env
from hub_server import HubServer

from deforum_wan.models.registry import DEPTH_MODELS
from deforum_wan.models.tiny import build_tiny_depth
from deforum_wan.models.weights import locate_depth

pytest.importorskip("gradio")

from deforum_wan.webui.fields import FIELDS  # noqa: E402
from deforum_wan.webui.tab_handlers import WanTab  # noqa: E402

REAL = real_settings_files()
SERVED = DEPTH_MODELS["depth-dpt-large"]  # Midas-3-Hybrid, Deforum's default depth algorithm
TINY = {"model": "tiny-random [built locally]", "frames": 5, "width": 64, "height": 64, "init_image": "",
        "soundtrack": ""}


def by_name(name: str):
    found = [p for p in REAL if p.name == name]
    if not found:
        pytest.skip(f"{name} is not among the real Deforum files")
    return found[0]


@pytest.fixture
def served(tmp_path, isolated_hf_cache, monkeypatch):
    """A tiny random DPT (as transformers saves one) served as SERVED's hub repo."""
    for name in ("HF_HUB_OFFLINE", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    source = build_tiny_depth(tmp_path / "served-depth")
    with HubServer(source, SERVED.repo) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        yield hub


@pytest.fixture
def models(tmp_path, tiny_models_dir):
    """A models folder with the tiny Wan models and no depth model."""
    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("tiny-random", "tiny-random-i2v"):
        (folder / name).symlink_to(tiny_models_dir / name)
    return folder


@pytest.fixture
def queue(models, tmp_path):
    """A real job queue on ``models`` whose worker cannot start: what Generate checks, nothing renders."""
    from deforum_wan.service.jobs import JobManager

    manager = JobManager(tmp_path / "jobs.db", tmp_path / "out", models_dir=str(models), python="false")
    yield manager
    manager.shutdown()


def imported(tab: WanTab, path, **fields) -> tuple[list, dict, str]:
    """Import ``path`` as the browser does, then set ``fields`` (the tab's own values)."""
    from test_ui import upload

    out = tab.import_files([upload(path)])
    values, base, status = out[:len(FIELDS)], out[len(FIELDS)], out[-1]
    for name, value in fields.items():
        values[FIELDS.index(name)] = value
    return values, base, status


def fetch_depth(tab: WanTab, values, base) -> str:
    said, _stop = tab.download_depth(*values, base)
    wait_for(lambda: not tab.downloads.running, 60, "the depth model's download")
    return said


def test_a_3d_file_says_what_it_needs_and_download_depth_model_fetches_it(served, models, queue):
    tab = WanTab(queue)
    values, base, status = imported(tab, by_name("sdwebui_default_settings.txt"), **TINY)
    need = (f"depth model depth-dpt-large ({SERVED.repo}, about 1.4 GB) is not in {models} or the hub cache;"
            " press Download depth model, or untick Depth warping for a flat scene")
    assert status.startswith("imported sdwebui_default_settings.txt; renders ") and status.endswith(f"; first: {need}")
    assert values[FIELDS.index("depth_warping")] is True
    text, view, said = tab.plan(*values, base, [])
    assert said.startswith("plan: ") and said.endswith(f"; missing: {need}") and text.startswith(f"missing: {need}")
    assert "python -m" not in text + view + said
    assert tab.preview_camera(*values, base, [])[1] == f"error: {need}"
    assert tab.generate(*values, base, []) == f"error: tab: {need}"

    total = sum(f["size"] for f in served.files.values())
    assert fetch_depth(tab, values, base) == (f"downloading depth-dpt-large: {total / 1e6:.1f} MB"
                                              f" ({total / 1e6:.1f} MB to fetch) into {models}")
    assert tab.downloads.html().endswith("downloaded depth-dpt-large: Preview camera and Generate use it now</div>")
    assert locate_depth(SERVED, models) == models / "dpt-large"
    assert "missing" not in tab.plan(*values, base, [])[2]
    video, said = tab.preview_camera(*values, base, [])
    assert said.startswith("camera preview: 5 frames") and "depth: depth-dpt-large on every frame" in said, said
    assert tab.download_depth(*values, base)[0].startswith("depth model depth-dpt-large is already downloaded")


def test_depth_warping_off_is_a_flat_scene_that_needs_nothing(models, tmp_path):
    tab = WanTab(types.SimpleNamespace(outdir=tmp_path / "out", models_dir=str(models)))
    values, base, _ = imported(tab, by_name("tok_forge_default_settings.txt"), **TINY)
    said = tab.preview_camera(*values, base, [])[1]
    assert said.startswith("error: depth model depth-anything-v2-small (") and "untick Depth warping" in said
    values[FIELDS.index("depth_warping")] = False
    video, said = tab.preview_camera(*values, base, [])
    assert said.startswith("camera preview: 5 frames") and "depth:" not in said, said
    flat = dict(base, animation_mode="2D")
    assert tab.download_depth(*tab.field_values(flat), flat)[0] == (
        "Download depth model: this camera is not 3D, so it needs no depth model")


@pytest.mark.slow
@pytest.mark.skipif(not REAL, reason="real Deforum settings not found (set DEFORUM_SETTINGS_DIR)")
def test_every_real_file_previews_and_renders_from_the_tab(served, models, tmp_path):
    """Each real file, a few frames at 64x64 on the tiny model: Preview camera, then Generate on
    a real queue. 3D files whose depth model is served get it by the button; the others render
    as a flat scene (Depth warping off), as a user without that model would."""
    from deforum_wan.service.jobs import JobManager

    manager = JobManager(tmp_path / "jobs.db", tmp_path / "out", models_dir=str(models), env=worker_env(),
                         keep_warm=True)
    try:
        tab = WanTab(manager)
        ids, depth, flat = {}, [], []
        for path in REAL:
            values, base, _ = imported(tab, path, **TINY)
            said = tab.preview_camera(*values, base, [])[1]  # the preview needs depth wherever it is on
            if said.startswith("error: depth model depth-dpt-large"):
                fetch_depth(tab, values, base)
            elif said.startswith("error: depth model"):
                values[FIELDS.index("depth_warping")] = False
            said = tab.plan(*values, base, [])[2]
            assert said.startswith("plan: ") and "missing" not in said, (path.name, said)
            _, said = tab.preview_camera(*values, base, [])
            assert said.startswith("camera preview: 5 frames"), (path.name, said)
            (depth if "depth: " in said else flat).append(path.name)
            said = tab.generate(*values, base, [])
            assert said.startswith("queued job "), (path.name, said)
            ids[path.name] = said.split()[-1]
        records = {name: wait_for(lambda i=i: (r := manager.get(i))["status"] in ("done", "failed", "cancelled")
                                  and r, 300, f"{name}'s render") for name, i in ids.items()}
        failed = {name: r.get("error") for name, r in records.items() if r["status"] != "done"}
        assert not failed, failed
        assert depth and flat  # both ways through were taken
    finally:
        manager.shutdown()


def test_the_queue_hands_its_worker_the_tabs_words_for_a_missing_depth_model(tmp_path, monkeypatch):
    """The worker loads the depth model (render.depth): its message names the tab's button and
    field when the queue started it, the download command otherwise (the CLI)."""
    from deforum_wan.errors import WanError
    from deforum_wan.models.weights import DEPTH_HINT_ENV
    from deforum_wan.render.depth import DepthEstimator
    from deforum_wan.service.jobs import JobManager

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WanError) as cli:
        DepthEstimator("Midas-3-Hybrid", str(tmp_path))
    assert str(cli.value).endswith("run: python -m deforum_wan download depth-dpt-large, or set use_depth_warping"
                                   " false for a flat scene")
    manager = JobManager(tmp_path / "jobs.db", tmp_path / "out", env={})
    try:
        monkeypatch.setenv(DEPTH_HINT_ENV, manager.env[DEPTH_HINT_ENV])
    finally:
        manager.shutdown()
    with pytest.raises(WanError) as queued:
        DepthEstimator("Midas-3-Hybrid", str(tmp_path))
    assert str(queued.value).endswith("press Download depth model in the Wan tab, or untick Depth warping there for"
                                      " a flat scene") and "python -m" not in str(queued.value)
