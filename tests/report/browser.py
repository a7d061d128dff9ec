"""Open a report page in headless Chromium (Debian's /usr/bin/chromium, driven directly: no extra
package) and say which images did not load and what the page logged as an error."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = (
    "--headless --no-sandbox --disable-gpu --disable-background-networking "
    "--disable-component-update --disable-sync --no-first-run"
).split()

# appended to a copy of the page: records resource errors, uncaught errors and console.error calls,
# and after load every <img> that did not decode (naturalWidth 0), into an attribute that --dump-dom
# prints
PROBE = """<script>
(function () {
  var found = {errors: [], broken: [], images: 0};
  var old = console.error;
  console.error = function () {
    found.errors.push(Array.prototype.join.call(arguments, " "));
    old.apply(console, arguments);
  };
  window.addEventListener("error", function (e) {
    var t = e.target;
    found.errors.push(t && t.tagName ? "failed to load " + (t.src || t.href) : String(e.message));
  }, true);
  window.addEventListener("load", function () {
    var imgs = document.images;
    found.images = imgs.length;
    for (var i = 0; i < imgs.length; i++) {
      if (!imgs[i].complete || imgs[i].naturalWidth === 0)
        found.broken.push(imgs[i].getAttribute("src"));
    }
    document.documentElement.setAttribute("data-probe", JSON.stringify(found));
  });
})();
</script>"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def run_chromium(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def inspect_page(page: Path) -> dict:
    """{"images": count, "broken": [src of images that did not load], "errors": [page errors],
    "console": [console lines Chromium logged at error level]} for ``page`` opened from file://."""
    probe = page.with_name(f"_probe_{page.name}")
    html = page.read_text()
    head = html.lower().find("<head>")
    # the probe goes first, so it sees every later resource error
    probe.write_text(html[: head + 6] + PROBE + html[head + 6 :] if head >= 0 else PROBE + html)
    try:
        done = run_chromium(
            [
                *"--enable-logging=stderr --v=0 --virtual-time-budget=10000 --dump-dom".split(),
                probe.resolve().as_uri(),
            ]
        )
    finally:
        probe.unlink()
    match = re.search(r'data-probe="([^"]*)"', done.stdout)
    assert match, f"the page never finished loading in Chromium: {done.stderr[-2000:]}"
    found = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    console = [
        line
        for line in done.stderr.splitlines()
        if "CONSOLE" in line and ("ERROR" in line or "error" in line)
    ]
    return {**found, "console": console}


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 1600) -> Path:
    run_chromium(
        [
            "--hide-scrollbars",
            f"--window-size={width},{height}",
            "--virtual-time-budget=10000",
            f"--screenshot={png.resolve()}",
            page.resolve().as_uri(),
        ]
    )
    return png
