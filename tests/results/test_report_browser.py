"""The report as a reader sees it: opened in headless Chromium, every figure loaded, no errors."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from nfbench.results.report import write_report
from tests.results._runs import make_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]

_PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e)));
const log = console.error; console.error = (...a) => { window.__errors.push(a.join(' ')); log(...a); };
window.addEventListener('load', () => {
  const widths = Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0);
  const out = document.createElement('pre'); out.id = '__probe';
  out.textContent = JSON.stringify({widths: widths, errors: window.__errors});
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_report_opens_in_a_browser(tiny_dataset, tmp_path):
    run = make_run(tiny_dataset, tmp_path / "run")
    page = write_report([run], tmp_path / "report")
    probed = page.with_name("probed.html")
    probed.write_text(page.read_text().replace("<head>", "<head>" + _PROBE, 1))
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run([CHROMIUM, *FLAGS, *profile, "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()],
                         capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="__probe">(.*?)</pre>', dom.stdout, re.S)
    assert found, dom.stderr[-2000:]
    probe = json.loads(found.group(1).replace("&quot;", '"'))
    assert len(probe["widths"]) >= 7 and all(w > 0 for w in probe["widths"]), probe
    assert probe["errors"] == []
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *FLAGS, *profile, "--window-size=1400,2000", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10_000
