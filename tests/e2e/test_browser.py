"""End to end: the real app served by ``streamlit run``, every page loaded in headless Chromium.

The browser is Debian's ``/usr/bin/chromium`` (never downloaded), driven over the Chrome DevTools
Protocol with the ``websockets`` package. For each page the test waits until the app has finished
rendering, checks the DOM holds no exception box and holds the page's main elements, and saves a
screenshot (into ``$KALM_E2E_SCREENSHOTS`` when set, else the test's tmp folder). Every page must
run inside ``app.py``'s navigation (its sidebar entries, the wide layout), also when its URL is
the first request a fresh server gets (``kalm.ui.navigation``). On Compare it evaluates expert vs
random and renders their side-by-side video through the UI; on Home the one-click demo imagines
a rollout with the shipped grounded model.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("KALM_CHROMIUM", "/usr/bin/chromium")
PAGES = [("home", "/"), ("data", "/data"), ("imagine", "/imagine"), ("validity", "/validity"),
         ("train", "/train"), ("compare", "/compare")]
# The sidebar entries app.py declares, and each page's own title (its h1).
NAV = ["Home", "Data", "Imagine", "Validity", "Train", "Compare"]
TITLES = {"home": "KALM", "data": "Data", "imagine": "Imagine", "validity": "Validity",
          "train": "Train", "compare": "Compare"}
# The main column at WIDTH px with the sidebar open: about 1100 px in the app's wide layout,
# 736 px in Streamlit's default centred one (a page run without app.py).
WIDE_MIN_PX = 950
WIDTH, HEIGHT = 1400, 1800

pytestmark = pytest.mark.slow

ws_client = pytest.importorskip("websockets.sync.client", reason="the websockets package is needed "
                                "to drive Chromium over the DevTools protocol")
if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
    pytest.skip(f"no Chromium at {CHROMIUM} (Debian: sudo apt-get install -y chromium)",
                allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(fn, timeout: float, what: str, every: float = 0.25):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = fn()
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


class CDP:
    """A minimal Chrome DevTools Protocol client over one page target's websocket."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    def send(self, method: str, timeout: float = 60, **params):
        i = next(self.ids)
        self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        deadline = time.time() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.time())))
            if msg.get("id") == i:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expression: str):
        r = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                      awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"JS error in {expression[:80]!r}: {r['exceptionDetails']}")
        return r["result"].get("value")



def fake_finished_job(runs: Path) -> None:
    """A finished grounding job, so the Train page has a job with curves to show."""
    run = runs / "ground-demo"
    run.mkdir(parents=True)
    now = time.time()
    (run / "job.json").write_text(json.dumps({
        "kind": "ground", "argv": ["ground", "--data", "d.npz", "--out", str(run)],
        "command": f"python -m kalm ground --data d.npz --out {run} --preset tiny",
        "run_dir": str(run), "stdout": None, "pid": 0, "pgid": 0, "create_time": None,
        "started": now - 300, "state": "done", "returncode": 0, "ended": now - 10}))
    (run / "status.json").write_text(json.dumps({"stage": "ground", "state": "done", "step": 40,
                                                 "total": 40, "message": "finished"}))
    rows = ["step,loss,loss_action,loss_state,lr,val_rollout_action"]
    rows += [f"{s},{3.0 / s ** 0.5:.4f},{2.0 / s ** 0.5:.4f},{1.0 / s:.4f},0.0003,"
             f"{'' if s % 10 else round(2.2 / s ** 0.5, 4)}" for s in range(1, 41)]
    (run / "metrics.csv").write_text("\n".join(rows) + "\n")
    (run / "job.log").write_text("ground: 100%|##########| 40/40 [01:10<00:00]\n"
                                 f"grounded model in {run / 'model'}\n")


@contextlib.contextmanager
def serve(runs: Path, log_path: Path):
    """The app served by `streamlit run` on a free port, reading ``runs`` as its runs folder."""
    port = free_port()
    env = {**os.environ, "KALM_RUNS_DIR": str(runs), "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
           "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "KALM_APP_PRELOAD": "1"}
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port),
         "--server.fileWatcherType", "none"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: proc.poll() is None and urllib.request.urlopen(
            base + "/_stcore/health", timeout=2).read() == b"ok", 90, "the Streamlit server")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The app served on a free port, with an empty-ish runs folder (one finished job)."""
    runs = tmp_path_factory.mktemp("runs")
    fake_finished_job(runs)
    with serve(runs, runs.parent / "streamlit.log") as base:
        yield base, runs


@pytest.fixture
def fresh_app(tmp_path):
    """A server of its own whose first request is the test's: Streamlit decides how to run pages
    on a server's first session, so a direct link must be the first thing it sees."""
    runs = tmp_path / "runs"
    runs.mkdir()
    with serve(runs, tmp_path / "streamlit.log") as base:
        yield base


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium with a DevTools websocket on its page."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    port = free_port()
    proc = subprocess.Popen(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--no-default-browser-check", "--disable-extensions",
         "--mute-audio", f"--remote-debugging-port={port}", "--remote-allow-origins=*",
         f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        def page_ws():
            targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json",
                                                        timeout=2).read())
            return next((t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page"),
                        None)

        url = wait_until(page_ws, 60, "Chromium's DevTools endpoint")
        with ws_client.connect(url, max_size=None, open_timeout=30) as ws:
            cdp = CDP(ws)
            cdp.send("Page.enable")
            cdp.send("Runtime.enable")
            cdp.send("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT,
                     deviceScaleFactor=1, mobile=False)
            yield cdp
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    d = os.environ.get("KALM_E2E_SCREENSHOTS")
    out = Path(d) if d else tmp_path_factory.mktemp("screenshots")
    out.mkdir(parents=True, exist_ok=True)
    return out


# The app has rendered when its main block has a title and no "Running..." status shows.
RENDERED = """(() => {
  const main = document.querySelector('[data-testid="stMain"]');
  if (!main || !main.querySelector('h1')) return false;
  const running = document.querySelector('[data-testid="stStatusWidgetRunningIcon"], '
    + '[data-testid="stStatusWidgetRunningManIcon"]');
  const status = document.querySelector('[data-testid="stStatusWidget"]');
  return !running && !(status && /running/i.test(status.innerText || ''));
})()"""


def wait_rendered(cdp: CDP, timeout: float = 90) -> None:
    """Until the page is rendered and has stayed so for a second (a rerun may follow)."""
    deadline = time.time() + timeout
    stable_since = None
    while time.time() < deadline:
        if cdp.js(RENDERED):
            stable_since = stable_since or time.time()
            if time.time() - stable_since >= 1.5:
                return
        else:
            stable_since = None
        time.sleep(0.25)
    raise AssertionError("the page did not finish rendering: "
                         + str(cdp.js("document.body.innerText.slice(0, 400)")))


def count(cdp: CDP, selector: str) -> int:
    return cdp.js(f"document.querySelectorAll({json.dumps(selector)}).length")


def exceptions(cdp: CDP) -> list[str]:
    return cdp.js("""Array.from(document.querySelectorAll(
        '[data-testid="stException"], .stException')).map(e => e.innerText.slice(0, 500))""")


def screenshot(cdp: CDP, path: Path) -> None:
    data = cdp.send("Page.captureScreenshot", format="png")["data"]
    path.write_bytes(base64.b64decode(data))


def click_button(cdp: CDP, starts_with: str) -> None:
    found = cdp.js(f"""(() => {{
      const b = Array.from(document.querySelectorAll('button'))
        .find(b => b.innerText.trim().startsWith({json.dumps(starts_with)}) && !b.disabled);
      if (!b) return false;
      b.scrollIntoView(); b.click(); return true;
    }})()""")
    assert found, f"no enabled button starting with {starts_with!r}"


def type_into(cdp: CDP, aria_label: str, text: str) -> None:
    """Replace a text or number input's value as a person would: select all, type, Enter."""
    ok = cdp.js(f"""(() => {{
      const i = document.querySelector('input[aria-label={json.dumps(aria_label)}]');
      if (!i) return false;
      i.scrollIntoView(); i.focus(); i.select(); return true;
    }})()""")
    assert ok, f"no input labelled {aria_label!r}"
    cdp.send("Input.insertText", text=text)
    for kind in ("keyDown", "keyUp"):
        cdp.send("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter",
                 windowsVirtualKeyCode=13, nativeVirtualKeyCode=13)


def nav_titles(cdp: CDP) -> list[str]:
    """The sidebar's page entries as shown (the label, without the icon's ligature text)."""
    return cdp.js("""Array.from(document.querySelectorAll('[data-testid="stSidebarNavLink"]'))
        .map(a => a.innerText.trim().split('\\n').filter(s => s.trim()).pop())""")


def main_title(cdp: CDP) -> str:
    return cdp.js("document.querySelector('[data-testid=\"stMain\"] h1').innerText")


def main_width(cdp: CDP) -> float:
    return cdp.js("document.querySelector('[data-testid=\"stMainBlockContainer\"]')"
                  ".getBoundingClientRect().width")


def assert_inside_app(cdp: CDP, name: str) -> None:
    """The page runs inside app.py's navigation: its sidebar, its title, the wide layout."""
    assert nav_titles(cdp) == NAV, (name, nav_titles(cdp))
    assert main_title(cdp).startswith(TITLES[name]), (name, main_title(cdp))
    assert main_width(cdp) >= WIDE_MIN_PX, (name, main_width(cdp))


def open_page(cdp: CDP, url: str) -> None:
    cdp.send("Page.navigate", url=url)
    wait_until(lambda: cdp.js("document.readyState") == "complete", 60, f"{url} to load")
    wait_rendered(cdp)


def test_every_page_renders_without_errors(app, browser, shots):
    base, runs = app
    for name, path in PAGES:
        open_page(browser, base + path)
        assert exceptions(browser) == [], f"{name}: {exceptions(browser)}"
        title = main_title(browser)
        assert title, name
        assert_inside_app(browser, name)
        if name == "home":
            assert "KALM" in title
            text = browser.js("document.body.innerText")
            assert "Local runs" in text and "Grounded models" in text
            metrics = browser.js("""Array.from(document.querySelectorAll(
                '[data-testid="stMetric"]')).map(m => m.innerText.split('\\n').filter(s => s))""")
            assert [m[0] for m in metrics] == ["Datasets", "Grounded models", "Imagined sets",
                                               "Trained policies", "Jobs"], metrics
            assert metrics[-1][1] == "1", metrics  # the fake finished job
        if name == "train":
            assert title.startswith("Train")
            assert count(browser, '[data-testid="stForm"]') >= 2
            wait_until(lambda: count(browser, ".js-plotly-plot") >= 1, 60,
                       "the demo job's learning curves (plotly)")
            assert "ground-demo" in browser.js("document.body.innerText")
        if name == "compare":
            assert title.startswith("Compare")
            assert count(browser, '[data-testid="stMultiSelect"]') >= 2
        screenshot(browser, shots / f"{name}.png")
        print(f"screenshot: {shots / f'{name}.png'}")


def test_compare_evaluates_and_shows_chart_and_video(app, browser, shots):
    base, runs = app
    open_page(browser, base + "/compare")
    type_into(browser, "Episodes per category", "3")
    # the page opens on the shipped KALM and real-only policies
    button = "Evaluate trained: assets/policies/kalm, trained: assets/policies/real_only"
    wait_until(lambda: button in browser.js("document.body.innerText"), 30, "the Evaluate button")
    wait_rendered(browser)
    click_button(browser, button)
    wait_until(lambda: count(browser, ".js-plotly-plot") >= 1, 240, "the success chart")
    wait_rendered(browser)
    assert exceptions(browser) == []
    text = browser.js("document.body.innerText")
    assert "Success per category" in text and "kalm" in text and "real_only" in text
    click_button(browser, "Render video")
    wait_until(lambda: count(browser, "video") >= 1, 180, "the side-by-side video")
    wait_rendered(browser)
    assert exceptions(browser) == []
    src = browser.js("document.querySelector('video').src")
    assert src, "the video has no source"
    screenshot(browser, shots / "compare-results.png")
    print(f"screenshot: {shots / 'compare-results.png'}")
    assert list((runs / "compare-cache" / "videos").glob("*.mp4"))


def test_direct_links_open_inside_the_app_navigation(fresh_app, browser, shots):
    """Each page URL opened in a fresh tab, a page (not /) first on a fresh server: every one runs
    inside app.py's navigation (its sidebar entries, the wide layout), not as a bare pages/ file."""
    base = fresh_app
    for name, path in [p for p in PAGES if p[0] != "home"] + [("home", "/")]:
        open_page(browser, base + path)
        assert exceptions(browser) == [], f"{name}: {exceptions(browser)}"
        assert_inside_app(browser, name)
        shot = shots / f"direct-{path.strip('/') or 'root'}.png"
        screenshot(browser, shot)
        print(f"screenshot: {shot}")


def test_home_demo_imagines_with_the_shipped_model(app, browser, shots):
    """One click on Home: the shipped grounded model imagines the demo goal; the side-by-side
    video and the validity table appear (the first click also loads the model)."""
    if not (REPO / "assets" / "grounded" / "clevr" / "grounded.json").is_file():
        pytest.skip("no shipped grounded model in assets/grounded/clevr")
    base, runs = app
    open_page(browser, base + "/")
    assert browser.js("""(() => {
      const b = document.querySelector('.st-key-home_demo_go button');
      if (!b || b.disabled) return false;
      b.scrollIntoView(); b.click(); return true;
    })()"""), "no enabled demo button"
    t0 = time.time()
    wait_until(lambda: count(browser, '[data-testid="stMain"] video') >= 1, 300,
               "the demo's video")
    took = time.time() - t0
    wait_rendered(browser)
    assert exceptions(browser) == []
    text = browser.js("document.body.innerText")
    assert "Goal met (match)" in text and "Replay success" in text
    assert "The LM explains its rollout" in text
    assert browser.js("document.querySelector('[data-testid=\"stMain\"] video').src")
    screenshot(browser, shots / "home-demo.png")
    print(f"demo video {took:.1f} s after the click; screenshot: {shots / 'home-demo.png'}")
