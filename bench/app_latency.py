"""How long the app makes a person wait, measured in headless Chromium on the real server.

Each repeat starts a fresh server the way ``scripts/app.sh`` does (``scripts/serve.py``: the
background preload starts with the server) on a free localhost port, drives Debian's
``/usr/bin/chromium`` over the DevTools protocol (the client of ``tests/e2e/test_browser.py``) and
measures, from the browser's side:

ready         server start -> the Imagine page says the grounded model is ready
first click   on Imagine (one goal, max steps 20), the first click after the server started:
              click -> the first imagined step on screen (the live view), -> the finished page
              (the validity checks shown and the side-by-side video playable), -> the LM's
              explanation shown
warm click    the same for a later click (another seed, so that nothing is taken from a cache)
home demo     Home's one-click demo: click -> its video on screen (playable)

With ``--click-at-once`` the first click is made as soon as the page can take it, without
waiting for the model (then it includes what is left of the model's load).

    python bench/app_latency.py [--repeats 3] [--click-at-once]

Prints one line per repeat and the medians. Timings on a shared CPU are noisy: use the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.test_browser import (  # noqa: E402  (the e2e test's DevTools client)
    CDP,
    CHROMIUM,
    free_port,
    type_into,
    wait_rendered,
    wait_until,
    ws_client,
)

GOAL = "Put the red ball to the left of the blue ball"
FIRST_SEED, WARM_SEED = 0, 57  # both run the full 20 steps with GOAL and the shipped model
MAX_STEPS = 20

TEXT = "document.body.innerText"
VIDEO = """(() => {
  const v = document.querySelector('[data-testid="stMain"] video');
  return v ? [v.currentSrc || v.src || '', v.readyState] : null;
})()"""


def serve(runs: Path, log):
    """The app as scripts/app.sh starts it, on a free port; (process, base URL, start time)."""
    port = free_port()
    env = {**os.environ, "KALM_RUNS_DIR": str(runs), "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
           "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
           "PYOPENGL_PLATFORM": os.environ.get("PYOPENGL_PLATFORM", "egl"),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "serve.py"), "--server.address", "127.0.0.1",
         "--server.headless", "true", "--server.port", str(port)],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: proc.poll() is None and urllib.request.urlopen(
        base + "/_stcore/health", timeout=2).read() == b"ok", 120, "the Streamlit server")
    return proc, base, t0


def chromium(profile: Path):
    port = free_port()
    proc = subprocess.Popen(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--no-default-browser-check", "--disable-extensions",
         "--autoplay-policy=no-user-gesture-required", "--mute-audio",
         f"--remote-debugging-port={port}", "--remote-allow-origins=*",
         f"--user-data-dir={profile}", "--window-size=1400,1800", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def page_ws():
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json",
                                                    timeout=2).read())
        return next((t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page"), None)

    return proc, wait_until(page_ws, 60, "Chromium's DevTools endpoint")


def stop(proc) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


def poll(fn, timeout: float, what: str, every: float = 0.03) -> float:
    """Seconds (perf_counter) at which ``fn()`` first held."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if fn():
            return time.perf_counter()
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def click(cdp: CDP, key: str) -> float:
    t = time.perf_counter()
    ok = cdp.js(f"""(() => {{
      const b = document.querySelector('.st-key-{key} button');
      if (!b || b.disabled) return false;
      b.scrollIntoView(); b.click(); return true;
    }})()""")
    assert ok, f"no enabled button {key}"
    return t


def imagine_click(cdp: CDP, seed: int) -> dict:
    """Set the seed, click Imagine; seconds to the first live step, the finished page and the
    explanation, and the rollout's length."""
    type_into(cdp, "Initial state seed", str(seed))
    wait_rendered(cdp)
    old = (cdp.js(VIDEO) or [""])[0]
    t0 = click(cdp, "im_go")
    first = poll(lambda: "The LM is imagining… step" in cdp.js(TEXT), 300, "the first live step")

    def finished():
        v = cdp.js(VIDEO)
        return (v is not None and v[0] and v[0] != old and v[1] >= 2
                and "Realistic transitions" in cdp.js(TEXT))

    try:
        done = poll(finished, 300, "the checks and a playable video")
    except AssertionError as e:
        raise AssertionError(f"{e}; video {cdp.js(VIDEO)}, page: {cdp.js(TEXT)[-1500:]}") from None
    # this rollout's explanation (inside the result, which the click cleared; the caption
    # "... to the LM's explanation" below it stays from the last click until the run ends)
    explained = poll(lambda: "The LM explains its rollout" in cdp.js(TEXT)
                     and "The LM is explaining its rollout" not in cdp.js(TEXT), 300,
                     "the explanation")
    text = cdp.js(TEXT)
    steps = next((ln.split(" steps")[0].split("Imagined ")[-1] for ln in text.splitlines()
                  if ln.startswith("Imagined ") and "drawn live" in ln), "?")
    gen = next((ln.split(" · LM ")[1].split(" s")[0] for ln in text.splitlines()
                if " · LM " in ln), "?")  # the page's own generation time
    wait_rendered(cdp)
    return {"first_step_s": first - t0, "finished_s": done - t0, "explained_s": explained - t0,
            "steps": steps, "generate_s": gen}


def home_demo(cdp: CDP, base: str) -> float:
    cdp.send("Page.navigate", url=base + "/")
    wait_until(lambda: cdp.js("document.readyState") == "complete", 60, "Home")
    wait_rendered(cdp)
    t0 = click(cdp, "home_demo_go")
    done = poll(lambda: (cdp.js(VIDEO) or ["", 0])[1] >= 2, 300, "the demo's playable video")
    wait_rendered(cdp)
    return done - t0


def one_repeat(args, work: Path, k: int) -> dict:
    runs = work / f"runs-{k}"
    runs.mkdir()
    log = open(work / f"server-{k}.log", "w")
    server, base, t_start = serve(runs, log)
    browser, url = chromium(work / f"profile-{k}")
    out: dict = {}
    try:
        with ws_client.connect(url, max_size=None, open_timeout=30) as ws:
            cdp = CDP(ws)
            cdp.send("Page.enable")
            cdp.send("Runtime.enable")
            cdp.send("Emulation.setDeviceMetricsOverride", width=1400, height=1800,
                     deviceScaleFactor=1, mobile=False)
            cdp.send("Page.navigate", url=base + "/imagine")
            wait_until(lambda: cdp.js("document.readyState") == "complete", 60, "/imagine")
            poll(lambda: "Goal text" in cdp.js(TEXT), 120, "the Imagine page")
            out["page_s"] = time.perf_counter() - t_start
            if not args.click_at_once:
                out["ready_s"] = poll(lambda: "The grounded model is ready" in cdp.js(TEXT), 300,
                                      "the model to be ready", every=0.1) - t_start
            wait_rendered(cdp)
            type_into(cdp, "Goal text", GOAL)
            wait_rendered(cdp)
            type_into(cdp, "Max steps", str(MAX_STEPS))
            wait_rendered(cdp)
            out["first"] = imagine_click(cdp, FIRST_SEED)
            out["warm"] = imagine_click(cdp, WARM_SEED)
            out["home_demo_s"] = home_demo(cdp, base)
    finally:
        stop(browser)
        stop(server)
        log.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--click-at-once", action="store_true",
                    help="make the first click as soon as the page takes it (no wait for ready)")
    args = ap.parse_args()
    if not Path(CHROMIUM).is_file():
        sys.exit(f"no Chromium at {CHROMIUM} (Debian: apt-get install -y chromium)")
    work = Path(tempfile.mkdtemp(prefix="kalm-app-latency-"))
    results = []
    try:
        for k in range(args.repeats):
            r = one_repeat(args, work, k)
            results.append(r)
            f, w = r["first"], r["warm"]
            print(f"repeat {k}: page {r['page_s']:.1f} s"
                  + (f", model ready {r['ready_s']:.1f} s" if "ready_s" in r else "")
                  + f" after server start | first click ({f['steps']} steps): first step "
                  f"{f['first_step_s']:.2f} s, finished {f['finished_s']:.2f} s, explanation "
                  f"{f['explained_s']:.2f} s (LM {f['generate_s']} s) | warm click ({w['steps']} steps): first step "
                  f"{w['first_step_s']:.2f} s, finished {w['finished_s']:.2f} s, explanation "
                  f"{w['explained_s']:.2f} s (LM {w['generate_s']} s) | home demo video {r['home_demo_s']:.2f} s",
                  flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def med(get) -> float:
        return statistics.median(get(r) for r in results)

    print(f"\nmedians over {len(results)} repeats (seconds):")
    if not args.click_at_once:
        print(f"  server start -> model ready on Imagine  {med(lambda r: r['ready_s']):6.2f}")
    for name in ("first", "warm"):
        print(f"  {name:5} click -> first step visible     {med(lambda r: r[name]['first_step_s']):6.2f}"
              f"   (target < 0.5)")
        target = "4" if name == "first" else "1.5"
        print(f"  {name:5} click -> finished page         {med(lambda r: r[name]['finished_s']):6.2f}"
              f"   (target <= {target})")
        print(f"  {name:5} click -> explanation shown     {med(lambda r: r[name]['explained_s']):6.2f}")
    print(f"  home demo click -> video on screen     {med(lambda r: r['home_demo_s']):6.2f}"
          "   (target <= 1.5)")


if __name__ == "__main__":
    main()
