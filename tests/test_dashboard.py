"""The web dashboard on a real federation, driven in the system's headless Chromium (Playwright).

One project: server (with FLRUNTIME_DASHBOARD_PORT=0), site-1 and site-2, the project admin admin@acme.org and a
member viewer@acme.org. A fedavg_pt job runs while its page is open: its curves must have one point per round per
site (and the system metrics as many as metrics.jsonl holds), its cross-site matrix must be drawn as a heatmap; a
long numpy job's round counter must advance on its page while it runs. The admin clones and aborts through the
buttons; the member sees no button and a POST abort of theirs is refused (403) and audited; every request without a
session is refused (401).
Screenshots go to tests/artifacts/ (ignored by git).
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from flruntime.federation import AdminSession
from tests.fedkit import Federation, fedavg_job, np_job

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
ROUNDS = 4
SITES = ["site-1", "site-2"]
ADMIN, VIEWER = "admin@acme.org", "viewer@acme.org"
FORBIDDEN = "Failed to load resource: the server responded with a status of 403 (FORBIDDEN)"


def http(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    """(status, content type, body) of a request without any cookie."""
    request = urllib.request.Request(
        url, method=method, headers=headers or {}, data=b"{}" if method == "POST" else None
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode(errors="replace")


def metric_counts(path: Path) -> Counter[tuple[str, str]]:
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return Counter((m["site"], m["tag"]) for m in lines)


def page_curves(page: Page) -> dict[str, dict[str, Any]]:
    """Every curve plot on the job page, read back from plotly's figure data: {tag: {site: trace}}."""
    return page.evaluate(
        """() => Object.fromEntries(Array.from(document.querySelectorAll('#curves .curve')).map(d => [
            d.dataset.tag,
            Object.fromEntries((d.data || []).map(t => [
                t.name, {type: t.type, x: Array.from(t.x), y: Array.from(t.y)}])),
        ]))"""
    )


def wait_polled(page: Page, more: int = 2) -> None:
    """Wait until the page refreshed ``more`` more times."""
    now = int(page.evaluate("() => Number(document.body.dataset.polls || 0)"))
    page.wait_for_function(f"() => Number(document.body.dataset.polls || 0) >= {now + more}", timeout=30_000)


def audit(fed: Federation) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (fed.kit("server") / "audit.log").read_text().splitlines()]


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("dashboard")
    federation = Federation(
        root,
        SITES,
        others=[{"name": VIEWER, "type": "admin", "org": "acme", "role": "member"}],
        env={"FLRUNTIME_DASHBOARD_PORT": "0", "FLRUNTIME_STATS_INTERVAL": "0.5"},
    )
    federation.start("server")
    federation.wait_log("server", r"listening on port")
    for site in SITES:
        federation.start(site)
        federation.wait_log("server", rf"client '{site}' \(org acme\) registered")
    yield federation
    federation.stop_all()


@pytest.fixture(scope="module")
def browser():
    assert CHROMIUM.is_file(), f"{CHROMIUM} is missing: `make install` installs Debian's chromium"
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def watch_errors(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


@pytest.mark.slow
def test_the_dashboard_in_headless_chromium(fed: Federation, browser: Browser, tmp_path: Path):
    base = fed.wait_log("server", r"dashboard at (http://127\.0\.0\.1:\d+)").group(1)
    ARTIFACTS.mkdir(exist_ok=True)

    # --- no session: every page, file and JSON endpoint is refused -------------------------------------------
    for path in ("/", "/jobs/x", "/static/dashboard.js", "/vendor/plotly.min.js", "/jobs/x/download", "/nope"):
        status, kind, body = http(base + path)
        assert (status, kind.split(";")[0]) == (401, "text/html"), path
        assert "flruntime admin -c dashboard_login" in body, path
    for path in ("/api/overview", "/api/jobs/x", "/api/jobs/x/metrics", "/api/jobs/x/crossval", "/api/jobs/x/logs"):
        status, kind, body = http(base + path)
        assert (status, kind, json.loads(body)) == (
            401,
            "application/json",
            {"error": "not logged in: get a login link with `flruntime admin -c dashboard_login`"},
        ), path
    for verb in ("abort", "clone"):
        assert http(f"{base}/api/jobs/x/{verb}", "POST")[0] == 401
    assert http(base + "/login?token=forged")[0] == 401
    assert http(base + "/", headers={"Cookie": f"flruntime_dashboard_{base.rsplit(':', 1)[1]}=forged.cookie"})[0] == 401

    # --- the admin logs in with a one-time link -----------------------------------------------------------------
    with AdminSession(fed.kit(ADMIN)) as admin:
        url = admin.dashboard_url()
        assert re.fullmatch(re.escape(base) + r"/login\?token=[\w-]{40,}", url), url
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        errors = watch_errors(page)
        page.goto(url)
        assert page.url == base + "/"  # redirected: the token is not left in the address bar
        assert http(url)[0] == 401  # used up
        (cookie,) = context.cookies()
        assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Strict")
        assert page.evaluate("() => document.cookie") == ""

        # sites listed online, with their version
        for site in SITES:
            row = page.locator(f'#sites tr[data-site="{site}"]')
            row.locator(".badge", has_text="online").wait_for(timeout=15_000)
            assert row.locator("td").nth(4).inner_text() == "0.1.0"
        assert page.locator("#sites tbody tr").count() == len(SITES)

        # a job with real training curves and a cross-site matrix, watched from its page while it runs
        job_id = admin.submit(fedavg_job(tmp_path / "fedavg", ROUNDS, tuple(SITES)))
        page.locator(f'#jobs tr[data-job-id="{job_id}"] a').click()
        page.wait_for_url(f"{base}/jobs/{job_id}")
        page.evaluate(
            """() => {
                window.seen = [];
                const note = () => window.seen.push([
                    document.getElementById('job-status').textContent,
                    document.getElementById('job-rounds').textContent]);
                for (const id of ['job-status', 'job-rounds'])
                    new MutationObserver(note).observe(document.getElementById(id),
                        {childList: true, characterData: true, subtree: true});
                note();
            }"""
        )
        page.wait_for_function(
            "() => document.getElementById('job-status').textContent.startsWith('FINISHED')", timeout=300_000
        )
        assert page.locator("#job-status").inner_text() == "FINISHED:COMPLETED"
        seen = [(status, int(rounds)) for status, rounds in page.evaluate("() => window.seen")]
        print("fedavg_pt: status and rounds seen on its page:", list(dict.fromkeys(seen)))
        rounds = [r for _, r in seen]
        assert rounds == sorted(rounds) and page.locator("#job-rounds").inner_text() == str(ROUNDS), seen

        # curves: one trace per site per tag, as many points as metrics.jsonl holds
        metrics = fed.kit("server") / job_id / "metrics.jsonl"
        deadline = time.monotonic() + 30
        while True:
            wait_polled(page, 1)
            want, curves = metric_counts(metrics), page_curves(page)
            drawn = Counter({(s, tag): len(t["x"]) for tag, traces in curves.items() for s, t in traces.items()})
            if drawn == want or time.monotonic() > deadline:
                break
        assert drawn == want
        for tag in ("train_loss", "val_acc_global_model"):
            assert set(curves[tag]) == set(SITES)
            for site in SITES:
                trace = curves[tag][site]
                assert trace["type"] == "scatter" and len(trace["x"]) == len(trace["y"]) == ROUNDS, (tag, site)
        for tag in ("system/cpu_percent", "system/rss_mib"):
            assert set(curves[tag]) == set(SITES) and all(len(curves[tag][s]["x"]) >= 1 for s in SITES)
        train = [json.loads(line) for line in metrics.read_text().splitlines()]
        want_loss = [m["value"] for m in train if m["site"] == "site-1" and m["tag"] == "train_loss"]
        assert curves["train_loss"]["site-1"]["y"] == want_loss

        # the cross-site matrix as a heatmap
        results = json.loads((fed.kit("server") / job_id / "cross_site_val" / "cross_val_results.json").read_text())
        page.locator('#crossval .heatmap[data-metric="val_acc"] .main-svg').first.wait_for(timeout=30_000)
        heat = page.evaluate(
            """() => { const d = document.querySelector('#crossval .heatmap[data-metric="val_acc"]');
                       const t = d.data[0]; return {type: t.type, x: t.x, y: t.y, z: t.z,
                       drawn: d._fullData[0].type, cells: d.querySelectorAll('.hm').length}; }"""
        )
        assert (heat["type"], heat["drawn"], heat["cells"]) == ("heatmap", "heatmap", 1)
        assert heat["y"] == SITES and set(heat["x"]) == {m for r in results.values() for m in r}
        assert heat["x"][0].startswith("SRV_")
        for i, site in enumerate(heat["y"]):
            for j, model in enumerate(heat["x"]):
                assert heat["z"][i][j] == pytest.approx(results[site][model]["val_acc"])

        # each site's log tail
        for site in ["server", *SITES]:
            text = page.locator(f'pre.log[data-site="{site}"]').inner_text()
            assert text and len(text.splitlines()) <= 200, site
        assert f"job {job_id}: round {ROUNDS - 1} done" in page.locator('pre.log[data-site="server"]').inner_text()

        # downloads: the results zip and the models
        with page.expect_download() as download:
            page.locator("#download-zip").click()
        with zipfile.ZipFile(download.value.path()) as zf:
            names = set(zf.namelist())
        assert {"metrics.jsonl", "FL_global_model.pt", "cross_site_val/cross_val_results.json"} <= names
        models = page.locator("#models a.model").all_inner_texts()
        assert "FL_global_model.pt" in models
        with page.expect_download() as download:
            page.locator("#models a.model", has_text=re.compile(r"^FL_global_model\.pt$")).click()
        got = Path(download.value.path()).read_bytes()
        assert got == (fed.kit("server") / job_id / "FL_global_model.pt").read_bytes()

        page.screenshot(path=ARTIFACTS / "dashboard-job.png", full_page=True)
        print(f"screenshot: {ARTIFACTS / 'dashboard-job.png'}")

        # the admin's buttons: no Abort on a finished job; Clone, then Abort of the clone
        assert page.locator("#abort-btn").is_hidden() and page.locator("#clone-btn").is_visible()
        no_csrf = page.evaluate(
            f"async () => (await fetch('/api/jobs/{job_id}/clone', {{method: 'POST'}})).status"
        )  # a POST without the page's CSRF token
        assert no_csrf == 403
        assert errors == [FORBIDDEN]  # chromium logs the refused request
        errors.clear()
        page.locator("#clone-btn").click()
        clone_id = page.locator("#clone-link").inner_text(timeout=15_000)
        assert admin.job(clone_id)["origin"] == job_id
        page.locator("#clone-link").click()
        page.wait_for_url(f"{base}/jobs/{clone_id}")
        page.locator("#abort-btn").wait_for(state="visible", timeout=15_000)
        page.once("dialog", lambda dialog: dialog.accept())
        page.locator("#abort-btn").click()
        page.locator("#message", has_text="Abort requested").wait_for(timeout=15_000)
        assert admin.wait(clone_id, timeout=120)["status"] == "FINISHED:ABORTED"
        page.locator("#job-status", has_text="FINISHED:ABORTED").wait_for(timeout=15_000)

        page.goto(base + "/")
        page.locator(f'#jobs tr[data-job-id="{clone_id}"]').wait_for(timeout=15_000)
        page.locator('#sites tr[data-site="site-1"] td.cpu', has_text="%").wait_for(timeout=15_000)
        page.screenshot(path=ARTIFACTS / "dashboard-overview.png", full_page=True)
        print(f"screenshot: {ARTIFACTS / 'dashboard-overview.png'}")
        assert not errors, errors
        context.close()

    # --- a long job: its round counter advances on its page while it runs ----------------------------------------
    with AdminSession(fed.kit(ADMIN)) as admin, AdminSession(fed.kit(VIEWER)) as viewer:
        running = admin.submit(np_job(tmp_path / "long", SITES, rounds=200, sleep=0.5))
        context = browser.new_context()
        page = context.new_page()
        errors = watch_errors(page)
        page.goto(admin.dashboard_url())
        page.goto(f"{base}/jobs/{running}")
        state = """() => [document.getElementById('job-status').textContent,
                          Number(document.getElementById('job-rounds').textContent)]"""
        page.wait_for_function(
            f"() => {{ const [s, r] = ({state})(); return s === 'RUNNING' && r >= 1; }}", timeout=120_000
        )
        first = page.evaluate(state)
        page.wait_for_function(
            f"() => {{ const [s, r] = ({state})(); return s === 'RUNNING' && r >= {first[1] + 2}; }}", timeout=60_000
        )
        later = page.evaluate(state)
        print(f"np job: {first} then {later} on its page")
        assert later[0] == "RUNNING" and later[1] > first[1] and not errors, errors
        context.close()

        # --- a member, on the running job: no buttons, no downloads; a POST abort is refused and audited ---------
        context = browser.new_context()
        page = context.new_page()
        errors = watch_errors(page)
        page.goto(viewer.dashboard_url())
        page.goto(f"{base}/jobs/{running}")
        page.locator("#job-status", has_text="RUNNING").wait_for(timeout=15_000)
        assert page.locator("#me").inner_text().startswith("viewer@acme.org (member, acme)")
        assert page.locator("#abort-btn").count() == 0 and page.locator("#clone-btn").count() == 0
        assert page.locator("#downloads").count() == 0
        page.locator('#curves .curve[data-tag="system/cpu_percent"]').wait_for(timeout=15_000)  # viewing is allowed
        refused = page.evaluate(
            f"""async () => {{
                const csrf = document.querySelector('meta[name="csrf-token"]').content;
                const r = await fetch('/api/jobs/{running}/abort',
                                      {{method: 'POST', headers: {{'X-CSRF-Token': csrf}}}});
                const z = await fetch('/jobs/{job_id}/download');
                const m = await fetch('/jobs/{job_id}/models/FL_global_model.pt');
                return [r.status, await r.json(), z.status, m.status];
            }}"""
        )
        assert refused == [
            403,
            {"error": "not authorised: role member may only view; abort_job needs manage"},
            403,
            403,
        ]
        assert errors == [FORBIDDEN] * 3, errors
        context.close()
        assert admin.job(running)["status"] == "RUNNING"  # the refused abort did nothing
        admin.abort(running)
        assert admin.wait(running, timeout=60)["status"] == "FINISHED:ABORTED"
    entries = audit(fed)
    mine = [(e["user"], e["command"], e["result"]) for e in entries if e["args"].get("via") == "dashboard"]
    assert mine == [
        (ADMIN, "download_job", "ok"),
        (ADMIN, "download_job", "ok"),
        (ADMIN, "clone_job", "ok"),
        (ADMIN, "abort_job", "ok"),
        (VIEWER, "abort_job", "refused"),
        (VIEWER, "download_job", "refused"),
        (VIEWER, "download_job", "refused"),
    ]
    assert {(e["user"], e["command"]) for e in entries if e["command"] == "dashboard_login"} == {
        (ADMIN, "dashboard_login"),
        (VIEWER, "dashboard_login"),
    }
