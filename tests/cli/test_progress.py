"""The command line's one progress bar, drawn from render events."""
from deforum_wan.cli.progress import ProgressBar
from deforum_wan.events import make


def test_the_bar_counts_steps_from_events_across_renders_resumes_and_retries(capsys):
    bar = ProgressBar("2 jobs", many=True)
    bar.event("a.txt", make("planned", window_steps=[4, 4]))
    bar.event("b.txt", make("planned", window_steps=[2]))
    assert bar.bar.total == 10 and bar.bar.n == 0
    bar.event("a.txt", make("started", run_dir="r", timestring="t", windows=2, frames=9, resume_from_window=1,
                            warnings=["careful"], window_steps=[4, 4]))
    assert bar.bar.n == 4  # a resume starts with its finished windows counted
    bar.event("a.txt", make("step", window=1, step=3, steps=4))
    assert bar.bar.n == 7
    bar.event("a.txt", make("window_done", window=1, windows=2, start_frame=5, end_frame=9, frames_written=9,
                            preview=None))
    bar.event("b.txt", make("step", window=0, step=1, steps=1))  # a distilled LoRA runs its own count
    assert bar.bar.total == 9 and bar.bar.n == 9
    bar.event("b.txt", make("job_done", job="b.txt", status="failed"))
    assert "1 failed" in bar.bar.postfix
    bar.event("", make("note", message="the cluster has no GPUs"))
    bar.close()
    err = capsys.readouterr().err
    assert "a.txt: warning: careful" in err and "the cluster has no GPUs" in err


def test_nothing_is_drawn_before_the_total_is_known():
    bar = ProgressBar("1 windows")
    bar.event("x", make("loading", model="m"))
    assert bar.bar is None
    bar.close()
