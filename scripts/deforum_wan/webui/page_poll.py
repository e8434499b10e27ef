"""The tab's 1 s poll, driven by the page: a timer in the page clicks a hidden button, never
while the last poll is unanswered or a file is uploading, and a file chosen while a poll is
out is handed to its field once the poll answered. gradio's own timers (3.x's ``every=``, 4.x's
``gr.Timer``) fire regardless, and on A1111's gradio 3.41 a poll crossing an upload left the
import at "Uploading..." now and then. On gradio 4+ the poll takes no input from the page (its
memo of what the page shows is kept here by session): 4.40's client warns ("Too many arguments
provided for the endpoint") on each call of an event with inputs, once a second here. 3.x names
no page in its requests; there a hidden textbox holds the memo."""
import json
import threading
from typing import Any, Callable

import gradio as gr

from .gradio_compat import GRADIO_MAJOR, on

BUTTON_ID = "wan_poll"
MEMO_ID = "wan_poll_memo"  # gradio 3.x only
PERIOD_MS = 1000
ANSWER_MS = 10_000  # a poll unanswered this long (a dropped reply) no longer holds the next back
SETTLE_MS = 300  # after an event of the tab ended, before an upload or a poll starts
UPLOAD_MS = 30_000  # an upload whose event never ended no longer holds the poll back

# Installed once per page by the tab's load event; A1111/Forge render the tab inside their own
# page (gradioApp), the standalone page is the document. gradio 3.41 redraws the page's values
# as each event ends, and a file field redrawn while its upload is out drops the upload's
# answer ("value changed since upload started"): a file chosen or dropped while a poll is out,
# or just after one of the tab's events ended, is handed to its field once all is quiet.
START_JS = f"""
() => {{
  if (window.wanPoll) return [];
  const poll = window.wanPoll = {{asked: 0, upload: 0, quiet: 0, clicks: 0, holds: 0, held: null}};
  const root = () => (typeof gradioApp === 'function') ? gradioApp() : document;
  const inTab = (node) => {{
    const tab = root().querySelector('#tab_wan');
    return !tab || (node instanceof Node && tab.contains(node));
  }};
  const busy = () => poll.asked || Date.now() < poll.quiet;
  const replay = () => {{
    const held = poll.held;
    if (!held) return;
    if (busy()) {{ setTimeout(replay, {SETTLE_MS}); return; }}
    poll.held = null;
    const again = held.type === 'drop'
      ? new DragEvent('drop', {{bubbles: true, cancelable: true, composed: true, dataTransfer: held.dataTransfer}})
      : new Event('change', {{bubbles: true, composed: true}});
    again.wanReplay = true;
    held.target.dispatchEvent(again);
  }};
  const started = (event) => {{
    const file = event.type === 'drop' || (event.target && event.target.type === 'file');
    if (!file || !inTab(event.target)) return;
    poll.upload = Date.now();
    if (event.wanReplay || !busy()) return;
    event.stopImmediatePropagation();
    event.preventDefault();
    poll.held = event;
    poll.holds += 1;
    setTimeout(replay, {SETTLE_MS});
  }};
  // The end of a poll ('answer') or of an upload's event ('upload'), from their .then events.
  poll.ended = (what) => {{
    if (what === 'answer') poll.asked = 0; else poll.upload = 0;
    poll.quiet = Date.now() + {SETTLE_MS};
  }};
  document.addEventListener('change', started, true);
  document.addEventListener('drop', started, true);
  setInterval(() => {{
    const now = Date.now();
    if (poll.asked && now - poll.asked >= {ANSWER_MS}) poll.ended('answer');
    if (busy() || poll.held || now - poll.upload < {UPLOAD_MS}) return;
    const button = root().querySelector('#{BUTTON_ID}');
    if (!button) return;
    poll.asked = now;
    poll.clicks += 1;
    button.click();
  }}, {PERIOD_MS});
  return [];
}}
"""
ANSWERED_JS = "() => { if (window.wanPoll) window.wanPoll.ended('answer'); return []; }"
UPLOADED_JS = "() => { if (window.wanPoll) window.wanPoll.ended('upload'); return []; }"


def poll_button() -> Any:
    """The button the page's timer clicks; hidden by the tab's CSS (``#wan_poll``)."""
    return gr.Button("poll", elem_id=BUTTON_ID)


class Memos:
    """The poll's memo of what each page shows (``WanTab.poll``'s last value), by gradio's
    session: kept here, as the poll takes no input from the page; the newest ``keep`` pages."""

    def __init__(self, keep: int = 64):
        self.keep, self.memos, self.lock = keep, {}, threading.Lock()

    def get(self, session: str):
        with self.lock:
            return self.memos.get(session)

    def put(self, session: str, memo) -> None:
        with self.lock:
            self.memos.pop(session, None)
            self.memos[session] = memo
            while len(self.memos) > self.keep:
                self.memos.pop(next(iter(self.memos)))


def wire_poll(demo, button, fn: Callable, outputs: list, uploads: list) -> None:
    """``fn(memo)`` (its outputs, then the new memo) on each click of ``button``; the page's
    timer started on load; each of ``uploads`` (the upload events' dependencies) lets the poll
    go on once its event ended. Inside the Blocks being built."""
    if GRADIO_MAJOR >= 4:
        memos = Memos()

        def polled(request: gr.Request):  # gradio hands the request in: no input from the page
            session = str(getattr(request, "session_hash", None) or "")
            *shown, memo = fn(memos.get(session))
            memos.put(session, memo)
            return shown

        clicked = on(button.click, polled, [], outputs, show_progress="hidden")
    else:  # 3.x's request names no page, and its client does not warn: the page keeps the memo
        box = gr.Textbox(value="{}", visible=False, elem_id=MEMO_ID)

        def polled_with_memo(memo: str):
            *shown, memo = fn(json.loads(memo or "{}"))
            return [*shown, json.dumps(memo)]

        clicked = on(button.click, polled_with_memo, [box], [*outputs, box], show_progress="hidden")
    on(clicked.then, None, [], [], js=ANSWERED_JS)
    for done in uploads:
        on(done.then, None, [], [], js=UPLOADED_JS)
    on(demo.load, None, [], [], js=START_JS)
