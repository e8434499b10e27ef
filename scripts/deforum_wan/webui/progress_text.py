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


def progress_text(job: dict | None, jobs: list[dict]) -> str:
    if job is None:
        return "idle: no jobs yet"
    p = job.get("progress") or {}
    name = f"{job.get('name') or 'job'} [{job['id'][:8]}]"  # the id: which job "done" is about
    status = job["status"]
    windows, frames = p.get("windows", 0), p.get("frames", 0)
    if status == "running":
        phase = p.get("phase") or "starting"
        text = f"{name}: {phase}"
        if windows:
            text += f" - window {min(p.get('window', 0) + 1, windows)}/{windows}"
        if p.get("steps"):
            text += f", step {p.get('step', 0)}/{p['steps']}"
        if frames:
            text += f", frames {p.get('frames_written', 0)}/{frames}"
    elif status == "queued":
        text = f"{name}: queued"
    elif status == "done":
        text = f"{name}: done - {p.get('frames_written', 0)} frames"
    elif status == "failed":
        text = f"{name}: failed - {job.get('error') or job.get('message') or 'no reason given'}"
    else:
        text = f"{name}: {status} after {p.get('frames_written', 0)} of {frames} frames"
    waiting = sum(1 for j in jobs if j["status"] == "queued")
    return text + (f" ({waiting} queued)" if waiting else "")


def resumable(jobs: list[dict], limit: int = 20) -> list[str]:
    """The Resume list: interrupted or failed jobs that wrote frames, the latest first."""
    found = [j for j in sorted(jobs, key=lambda j: j.get("created") or 0, reverse=True)
             if j["status"] in ("interrupted", "failed") and j.get("timestring") and j.get("settings_file")]
    return [f"{j['id']} {j.get('name') or 'job'} ({j['status']}, {j['progress'].get('frames_written', 0)}/"
            f"{j['progress'].get('frames', 0)} frames)" for j in found[:limit]]


def job_status_line(job: dict) -> str:
    """The Status box once a job runs and ends: one line."""
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
