"""The tab's progress panel as text: the current job's progress line, the Status line once it
runs, the queue table, the Resume list, and the names and folders it shows."""
from __future__ import annotations

import re
from pathlib import Path


def shown_path(path: str) -> str:
    """A folder as the tab shows it: relative to the working folder (the WebUI's) when inside it,
    as the WebUI shows its own output folders (outputs/img2img-images/...)."""
    if not path:
        return ""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def job_name(batch_name) -> str:
    """A readable job name: the batch name without its placeholders (Deforum_{timestring} -> Deforum)."""
    name = re.sub(r"[_-]?\{\w+\}", "", str(batch_name or "")).strip(" _-")
    return name or "wan"


def current_job(jobs: list[dict]) -> dict | None:
    running = [j for j in jobs if j["status"] == "running"]
    if running:
        return running[0]
    return max(jobs, key=lambda j: j.get("created") or 0) if jobs else None


def position(p: dict) -> str:
    """Where a render is, from ``events.reduce``'s state: "window i/n, step s/S, frames w/f"
    (the step while one runs). The tab's Progress box and the WebUI's own bar (host_bridge)
    both say it this way, so they agree."""
    windows = p.get("windows", 0)
    parts = [f"window {min(p.get('window', 0) + 1, windows)}/{windows}"] if windows else []
    if p.get("step") and p.get("steps"):
        parts.append(f"step {p['step']}/{p['steps']}")
    if p.get("frames"):
        parts.append(f"frames {p.get('frames_written', 0)}/{p['frames']}")
    return ", ".join(parts)


def eta_text(seconds: float | None) -> str:
    """``events.eta`` as the tab shows it ("" until a step time is measured): the steps left at
    the seconds per step so far, the figure the WebUI's own bar shows at each step."""
    if seconds is None:
        return ""
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"ETA {minutes}m {secs:02d}s" if minutes else f"ETA {secs}s"


RESUME_HINT = "press Resume to continue it"  # the tab's way; the queue's message says only that it can be


def progress_text(job: dict | None, jobs: list[dict], can_resume: bool = False) -> str:
    if job is None:
        return "idle: no jobs yet"
    p = job.get("progress") or {}
    name = f"{job.get('name') or 'job'} [{job['id'][:8]}]"  # the id: which job "done" is about
    status = job["status"]
    frames = p.get("frames", 0)
    if status == "running":
        phase = p.get("phase") or "starting"
        where = ", ".join(part for part in (position(p), eta_text(p.get("eta"))) if part)
        text = f"{name}: {phase}" + (f" - {where}" if where else "")
    elif status == "queued":
        text = f"{name}: queued"
    elif status == "done":
        text = f"{name}: done - {p.get('frames_written', 0)} frames"
    elif status == "failed":
        text = f"{name}: failed - {job.get('error') or job.get('message') or 'no reason given'}"
    else:
        text = f"{name}: {status} after {p.get('frames_written', 0)} of {frames} frames"
    if can_resume:
        text += f" - {RESUME_HINT}"
    waiting = sum(1 for j in jobs if j["status"] == "queued")
    return text + (f" ({waiting} queued)" if waiting else "")


def resumable(jobs: list[dict], limit: int = 20) -> list[str]:
    """The Resume list, the latest first: interrupted or failed jobs with frames on disk whose
    run is not finished and that no later job continues already (one resuming them, or one
    rendering into their folder). Each as "<id> <name> (<kept>/<all> frames kept)", short enough
    for the dropdown;
    the id first: ``resume`` reads it back."""
    by_age = sorted(jobs, key=lambda j: j.get("created") or 0)
    found = []
    for i, job in enumerate(by_age):
        p = job.get("progress") or {}
        if job["status"] not in ("interrupted", "failed") or not job.get("timestring") or not job.get("settings_file"):
            continue
        if p.get("frames") and p.get("frames_written", 0) >= p["frames"]:
            continue  # every frame is on disk: nothing left to render
        if any(_continues(later, job) for later in by_age[i + 1:]):
            continue
        found.append(job)
    return [_resume_label(j) for j in reversed(found)][:limit]


def _resume_label(job: dict) -> str:
    p = job.get("progress") or {}
    return f"{job['id']} {job.get('name') or 'job'} ({p.get('frames_written', 0)}/{p.get('frames', 0)} frames kept)"


def _continues(later: dict, job: dict) -> bool:
    """``later`` picks ``job``'s run up: it resumes its timestring or renders into its folder."""
    ts, run_dir = job.get("timestring"), job.get("run_dir")
    return bool(later.get("resume") == ts or later.get("timestring") == ts
                or (run_dir and later.get("run_dir") == run_dir))


def job_status_line(job: dict, can_resume: bool = False) -> str:
    """The Job line once a job runs and ends: one line; a job the Resume list offers says so."""
    line = _job_line(job)
    return f"{line} - {RESUME_HINT}" if can_resume else line


def _job_line(job: dict) -> str:
    name = f"job {job['id']}"
    status, p = job["status"], job.get("progress") or {}
    if status == "running":
        return f"{name} is rendering"
    if status == "done":
        return f"{name} done: {p.get('frames_written', 0)} frames" + (f", video {job['video']}" if job.get("video")
                                                                     else "")
    if status == "failed":
        return f"{name} failed: {job.get('error') or job.get('message') or 'no reason given'}"
    return f"{name} {status}: {job.get('message') or ''}".rstrip(": ")


def jobs_table(jobs: list[dict], limit: int = 10) -> str:
    if not jobs:
        return ""
    rows = ["| job | name | status | frames |", "|---|---|---|---|"]
    for job in sorted(jobs, key=lambda j: j.get("created") or 0, reverse=True)[:limit]:
        p = job.get("progress") or {}
        name = str(job.get("name") or "").replace("|", "/")
        rows.append(f"| {job['id'][:8]} | {name} | {job['status']} |"
                    f" {p.get('frames_written', 0)}/{p.get('frames', 0)} |")
    return "\n".join(rows)
