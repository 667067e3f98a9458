"""Screenshot of TensorBoard's per-timestep view, taken the way a user sees it.

Starts ``tensorboard --logdir LOGDIR`` on a free local port, opens the IMAGES tab in headless Chromium
(Playwright driving the system's ``chromium``), filters the tags to ``timestep``, ticks "Show actual image
size" and saves a PNG of the page. Needs ``pip install playwright`` and a Chromium binary (Debian:
``apt-get install chromium``; or ``python -m playwright install chromium``); neither is a dependency of the
package.

    python benchmarks/tensorboard_screenshot.py runs/claims/tb/importance_alpha_1_seed0 --out docs/tensorboard_timestep.png
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"TensorBoard did not answer at {url} within {timeout:.0f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("logdir")
    p.add_argument("--out", default="docs/tensorboard_timestep.png")
    p.add_argument("--tag", default="timestep", help="tag filter of the IMAGES tab")
    p.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"),
                   help="Chromium binary (default: the one on PATH; none: Playwright's own)")
    p.add_argument("--width", type=int, default=1500)
    p.add_argument("--height", type=int, default=1100)
    args = p.parse_args()
    if not Path(args.logdir).is_dir():
        raise SystemExit(f"{args.logdir}: no such log directory")
    from playwright.sync_api import sync_playwright

    port = free_port()
    tb = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", args.logdir, "--port", str(port)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(f"http://127.0.0.1:{port}/", 60)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            page.goto(f"http://127.0.0.1:{port}/?darkMode=false#images&tagFilter={args.tag}")
            page.wait_for_selector("text=Show actual image size", timeout=60_000)
            page.get_by_text("Show actual image size").click()
            page.wait_for_timeout(3000)  # the images load after the layout
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=args.out, full_page=False)
            browser.close()
    finally:
        tb.terminate()
        tb.wait(timeout=30)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
