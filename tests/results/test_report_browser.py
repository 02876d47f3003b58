"""The report as a reader sees it: opened in headless Chromium, every figure loaded, no errors.

The page is opened twice: once as a copy with a probe script and a Content-Security-Policy that
allows nothing but inline styles, inline scripts and ``data:`` images (so any external resource
would be blocked and reported), whose results the probe writes into the DOM that ``--dump-dom``
prints; once as it is, for a screenshot. Set ``NFBENCH_SCREENSHOTS`` to a folder to keep the
screenshot (CI uploads it); otherwise it stays in the test's temporary folder.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import pytest

from nfbench.results.report import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]

_PROBE = """<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e)), true);
document.addEventListener('securitypolicyviolation', e => window.__errors.push('blocked ' + e.blockedURI));
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
def test_report_opens_in_a_browser(oracle_run, tmp_path):
    page = write_report([oracle_run], tmp_path / "report", quiet=True, dpi=60)
    n_figures = len(list((tmp_path / "report" / "figures").glob("*.png")))
    probed = page.with_name("probed.html")
    probed.write_text(page.read_text().replace("<head>", "<head>" + _PROBE, 1))
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run([CHROMIUM, *FLAGS, *profile, "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()],
                         capture_output=True, text=True, timeout=120, check=False)
    found = re.search(r'<pre id="__probe">(.*?)</pre>', dom.stdout, re.DOTALL)
    assert found, dom.stderr[-2000:]
    probe = json.loads(html.unescape(found.group(1)))
    assert len(probe["widths"]) == n_figures >= 7
    assert all(w > 0 for w in probe["widths"]), probe
    assert probe["errors"] == []

    folder = Path(os.environ.get("NFBENCH_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    shot = folder / "report.png"
    subprocess.run([CHROMIUM, *FLAGS, *profile, "--window-size=1400,2000", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (2000, 1400)
    assert pixels[..., :3].std() > 0.05  # not a blank page
