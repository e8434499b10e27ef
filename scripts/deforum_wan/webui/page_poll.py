"""The tab's 1 s poll, driven by the page: a timer in the page clicks a hidden button, never
while the last poll is unanswered or a file is uploading. gradio's own timers (3.x's
``every=``, 4.x's ``gr.Timer``) fire regardless, and on A1111's gradio 3.41 a poll crossing an
upload left the import at "Uploading..." now and then. The poll's memo of what the page shows
is a hidden textbox, not a ``gr.State``: gradio 4's client warns ("Too many arguments provided
for the endpoint") on every call of an event with a State input, once a second here."""
from __future__ import annotations

from typing import Any, Callable

import gradio as gr

from .gradio_compat import on

BUTTON_ID = "wan_poll"
VIEW_ID = "wan_poll_view"
PERIOD_MS = 1000
ANSWER_MS = 10_000  # a poll unanswered this long (a dropped reply) no longer holds the next back
UPLOAD_MS = 30_000  # an upload whose event never ended no longer holds the poll back

# Installed once per page by the tab's load event; A1111/Forge render the tab inside their own
# page (gradioApp), the standalone page is the document.
START_JS = f"""
() => {{
  if (window.wanPoll) return [];
  const poll = window.wanPoll = {{asked: 0, upload: 0, clicks: 0}};
  const root = () => (typeof gradioApp === 'function') ? gradioApp() : document;
  const inTab = (node) => {{
    const tab = root().querySelector('#tab_wan');
    return !tab || (node instanceof Node && tab.contains(node));
  }};
  const started = (event) => {{
    const file = event.type === 'drop' || (event.target && event.target.type === 'file');
    if (file && inTab(event.target)) poll.upload = Date.now();
  }};
  document.addEventListener('change', started, true);
  document.addEventListener('drop', started, true);
  setInterval(() => {{
    const now = Date.now();
    if (now - poll.asked < {ANSWER_MS} || now - poll.upload < {UPLOAD_MS}) return;
    const button = root().querySelector('#{BUTTON_ID}');
    if (!button) return;
    poll.asked = now;
    poll.clicks += 1;
    button.click();
  }}, {PERIOD_MS});
  return [];
}}
"""
ANSWERED_JS = "() => { if (window.wanPoll) window.wanPoll.asked = 0; return []; }"
UPLOADED_JS = "() => { if (window.wanPoll) window.wanPoll.upload = 0; return []; }"


def view_box() -> Any:
    """The poll's memo of what the page shows (``WanTab.poll``'s last value)."""
    return gr.Textbox(value="{}", visible=False, elem_id=VIEW_ID)


def poll_button() -> Any:
    """The button the page's timer clicks; hidden by the tab's CSS (``#wan_poll``)."""
    return gr.Button("poll", elem_id=BUTTON_ID)


def wire_poll(demo, button, fn: Callable, inputs: list, outputs: list, uploads: list) -> None:
    """``fn`` on each click of ``button``; the page's timer started on load; each of
    ``uploads`` (the upload events' dependencies) lets the poll go on once its event ended."""
    clicked = on(button.click, fn, inputs, outputs, show_progress="hidden")
    on(clicked.then, None, [], [], js=ANSWERED_JS)
    for done in uploads:
        on(done.then, None, [], [], js=UPLOADED_JS)
    on(demo.load, None, [], [], js=START_JS)
