#!/usr/bin/env python3
"""Drives the Cordon web console in headless Chromium (Debian's /usr/bin/chromium, through
Playwright for Python) for the console browser test (tests/tests/console.rs).

    browser.py PHASE [ARGS...]

Environment: CONSOLE (base URL), ADMIN_TOKEN and READ_TOKEN (files holding the tokens),
SHOTS (directory for screenshots). Each phase signs in afresh, prints what it checked and
exits non-zero (with the page text) on the first thing that is not as expected. A phase
that waits for the Rust side prints a line `READY <what>` first.
"""
import os
import re
import sys
import time

from playwright.sync_api import expect, sync_playwright

BASE = os.environ["CONSOLE"].rstrip("/")
SHOTS = os.environ["SHOTS"]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
expect.set_options(timeout=20_000)


def token(var):
    with open(os.environ[var]) as f:
        return f.read().strip()


def say(*a):
    print(*a, flush=True)


def shot(page, name):
    page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def sign_in(page, var):
    page.goto(f"{BASE}/console/hosts")
    expect(page).to_have_url(re.compile(r"/console/signin$"))
    page.fill("input[name=token]", token(var))
    page.click("#signin button[type=submit]")
    expect(page).to_have_url(re.compile(r"/console/hosts$"))
    expect(page.locator("#who")).to_be_visible()


def phase_signin(page):
    """Wrong tokens are refused with a message; the right one signs in; sign-out ends it."""
    page.goto(f"{BASE}/console/signin")
    shot(page, "signin")
    page.fill("input[name=token]", "cdn_" + "0" * 64)
    page.click("#signin button[type=submit]")
    expect(page.locator("#error")).to_contain_text("not valid")
    sign_in(page, "ADMIN_TOKEN")
    page.click("#signout")
    expect(page).to_have_url(re.compile(r"/console/signin$"))
    page.goto(f"{BASE}/console/hosts")
    expect(page).to_have_url(re.compile(r"/console/signin$"))
    say("signin: wrong token refused, signed in, signed out")


def phase_live(page, host, port):
    """A flow made after the page loaded appears without a reload; then the filter."""
    sign_in(page, "ADMIN_TOKEN")
    page.goto(f"{BASE}/console/flows?host={host}")
    expect(page.locator("#live")).to_be_checked()
    before = page.locator(f"#flow-rows tr[data-port='{port}']").count()
    say("READY live")
    row = page.locator(f"#flow-rows tr.new[data-port='{port}']").first
    expect(row).to_be_visible(timeout=30_000)
    say(f"live: the flow to port {port} appeared without a reload ({before} before)")
    shot(page, "flows-live")
    # One click includes the port as a filter; the server filters.
    row.locator("a.pill[title^='only port']").click()
    expect(page).to_have_url(re.compile(rf"port={port}"))
    ports = page.locator("#flow-rows tr").evaluate_all("rs => rs.map(r => r.dataset.port)")
    if not ports or any(p != str(port) for p in ports):
        sys.exit(f"filtered by port {port}, the table shows ports {ports}")
    say(f"filter: {len(ports)} rows, all port {port}")
    shot(page, "flows-filtered")
    # The chart and the tops count the escaped flow; the port is among the most escaped.
    expect(page.locator("#flow-chart")).to_contain_text("escaped")
    expect(page.locator("#top-escaped")).to_contain_text(str(port))
    expect(page.locator("#top-hosts")).to_contain_text(host)
    # A flow's whole record: the process behind it, with its command line and user.
    page.locator("#flow-rows tr").first.locator("td a").first.click()
    expect(page).to_have_url(re.compile(r"/console/flows/\d+$"))
    expect(page.locator("#cmdline")).to_contain_text("curl")
    expect(page.locator("#flow-detail")).to_contain_text("Packets out / in")
    shot(page, "flow-record")
    say(f"record: {page.locator('#cmdline').inner_text()[:60]!r}")
    # Exclude the port with one click: none of its rows are left.
    page.go_back()
    page.goto(f"{BASE}/console/flows?host={host}")
    page.locator(f"#flow-rows tr[data-port='{port}']").first.locator("a.pill[title^='all but port']").click()
    expect(page).to_have_url(re.compile(rf"not_port={port}"))
    left = page.locator("#flow-rows tr").evaluate_all("rs => rs.map(r => r.dataset.port)")
    if str(port) in left:
        sys.exit(f"port {port} excluded, the table still shows it: {left}")
    say(f"exclude: {len(left)} rows, none of port {port}")
    # A group of the published policy: only its hosts' flows (h2 is the lab's client).
    page.goto(f"{BASE}/console/flows?group=clients&proto=tcp")
    cells = page.locator("#flow-rows tr td:nth-child(2)").evaluate_all("cs => cs.map(c => c.innerText)")
    if not cells or any(not c.startswith(host) for c in cells):
        sys.exit(f"group clients should show {host}'s flows only, it shows hosts {cells}")
    say(f"group: {len(cells)} rows, all of {host}")


def phase_isolate(page, host):
    """Isolate from the host page, through the confirmation, until the agent reports it."""
    sign_in(page, "ADMIN_TOKEN")
    shot(page, "hosts")
    page.click(f"#hosts tr[data-host='{host}'] a")
    page.click("#isolate")
    expect(page.locator("h1")).to_contain_text(f"Isolate {host}?")
    shot(page, "isolate-confirm")
    page.fill("#confirm input[name=reason]", "browser test: suspicious flows")
    page.select_option("#confirm select[name=duration]", "1h")
    page.click("#do")
    deadline = time.time() + 30
    while "since" not in page.locator("#isolation").inner_text():
        if time.time() > deadline:
            sys.exit("the host page never showed the isolation:\n" + page.inner_text("main"))
        time.sleep(0.5)
        page.reload()
    expect(page.locator("#isolation")).to_contain_text("suspicious flows")
    shot(page, "host-isolated")
    say(f"isolate: {host} isolated from the console")


def phase_release(page, host):
    sign_in(page, "ADMIN_TOKEN")
    page.click(f"#hosts tr[data-host='{host}'] a")
    page.click("#release")
    page.click("#do")
    deadline = time.time() + 30
    while "since" in page.locator("#isolation").inner_text():
        if time.time() > deadline:
            sys.exit("the host page still shows the isolation:\n" + page.inner_text("main"))
        time.sleep(0.5)
        page.reload()
    say(f"release: {host} released from the console")


def phase_approve(page):
    """The playbook run started by the escaped flow waits on the console: approve it and
    follow the run's timeline to its end."""
    sign_in(page, "ADMIN_TOKEN")
    deadline = time.time() + 30
    page.goto(f"{BASE}/console/response")
    while page.locator("#approvals tbody tr").count() == 0:
        if time.time() > deadline:
            sys.exit("no pending approval appeared:\n" + page.inner_text("main"))
        time.sleep(0.5)
        page.reload()
    shot(page, "approval")
    row = page.locator("#approvals tbody tr").first
    run = row.locator("a").first.inner_text()
    row.locator("button", has_text="Approve").click()
    expect(page).to_have_url(re.compile(r"/console/response$"))
    page.click(f"#runs a:text-is('{run.split()[-1]}')")
    deadline = time.time() + 30
    while "done" not in page.locator("h1").inner_text():
        if time.time() > deadline:
            sys.exit("the run did not finish:\n" + page.inner_text("main"))
        time.sleep(0.5)
        page.reload()
    steps = page.locator("#steps tbody tr").count()
    if steps < 2:
        sys.exit(f"the run's timeline has {steps} steps:\n" + page.inner_text("main"))
    shot(page, "run")
    say(f"approve: {run} approved on the console, done with {steps} steps")


def phase_review(page, version):
    """The learned draft's review: groups with members and confidence, rules with their
    statistics; approve one of each, then publish the draft."""
    sign_in(page, "ADMIN_TOKEN")
    page.goto(f"{BASE}/console/policy")
    page.click(f"#versions tr[data-version='{version}'] a")
    expect(page.locator("#groups tbody tr").first).to_be_visible()
    expect(page.locator("#rules tbody tr").first).to_be_visible()
    shot(page, "draft-review")
    # Reject the rule learned from the escaped attempt (port 9090): a new draft without it.
    bad = page.locator("#rules input[name=rule][value$='9090']")
    if bad.count() != 1:
        rules = page.locator("#rules input[name=rule]").evaluate_all("es => es.map(e => e.value)")
        sys.exit(f"expected one learned rule for port 9090, the draft has {rules}")
    rejected = bad.get_attribute("value")
    bad.check()
    page.click("#reject")
    expect(page).not_to_have_url(re.compile(rf"/console/policy/{version}$"))
    version = page.url.rsplit("/", 1)[1]
    expect(page.locator("h1")).to_contain_text(f"v{version}")
    if page.locator(f"#rules tr[data-rule='{rejected}']").count():
        sys.exit(f"rule {rejected} is still in the new draft v{version}")
    if rejected in page.locator("#yaml").inner_text().split("Learned draft")[1].split("\n", 1)[1]:
        sys.exit(f"rule {rejected} is still in the document of v{version}")
    say(f"reject: {rejected} left out, new draft v{version}")
    group = page.locator("#groups input[name=group]").first
    rule = page.locator("#rules input[name=rule]").first
    names = [group.get_attribute("value"), rule.get_attribute("value")]
    group.check()
    rule.check()
    page.click("#approve")
    for table, name in [("groups", names[0]), ("rules", names[1])]:
        cell = page.locator(f"#{table} tr[data-{table[:-1]}='{name}']")
        expect(cell).to_contain_text("approved")
    page.click("#publish button")
    expect(page.locator("h1")).to_contain_text("published")
    # The versions list marks it, and the diff against the first version shows changes.
    page.goto(f"{BASE}/console/policy?from=1&to={version}")
    expect(page.locator(f"#versions tr[data-version='{version}']")).to_contain_text("published")
    expect(page.locator("#changes")).to_be_visible()
    shot(page, "policy-diff")
    say(f"review: approved group {names[0]} and rule {names[1]}, published v{version}")
    say(f"PUBLISHED {version}")


def phase_check(page, version, host, remote_ip):
    """What would the policy say: the allowed port and another, for a hypothetical flow."""
    sign_in(page, "READ_TOKEN")
    page.goto(f"{BASE}/console/policy/{version}")
    for port, want in [("8080", "allowed"), ("9191", "denied")]:
        page.fill("#check input[name=host]", host)
        page.select_option("#check select[name=direction]", "outbound")
        page.fill("#check input[name=remote_ip]", remote_ip)
        page.fill("#check input[name=port]", port)
        page.click("#check button[type=submit]")
        expect(page.locator("#verdict")).to_contain_text(want)
        say(f"check: {host} -> {remote_ip}:{port} {want} by {page.locator('#rule').inner_text()}")
    shot(page, "policy-check")


def phase_map(page, version, groups):
    """The service map of a policy with many groups: laid out without overlapping boxes,
    and a click on a group lists its rules."""
    sign_in(page, "READ_TOKEN")
    page.goto(f"{BASE}/console/policy/{version}")
    page.click("#map-link")
    expect(page.locator("#map[data-ready='1']")).to_be_attached(timeout=30_000)
    n = page.evaluate("() => window.cordonMap.nodes().length")
    e = page.evaluate("() => window.cordonMap.edges().length")
    if n < int(groups):
        sys.exit(f"the map shows {n} groups, the policy has {groups}")
    overlaps = page.evaluate("""() => {
        const bb = window.cordonMap.nodes().map(n => n.boundingBox({includeLabels: true}));
        let k = 0;
        for (let i = 0; i < bb.length; i++) for (let j = i + 1; j < bb.length; j++) {
            const a = bb[i], b = bb[j];
            if (a.x1 < b.x2 && b.x1 < a.x2 && a.y1 < b.y2 && b.y1 < a.y2) k++;
        }
        return k;
    }""")
    if overlaps:
        sys.exit(f"{overlaps} pairs of groups overlap on the map")
    ms = page.locator("#map").get_attribute("data-layout-ms")
    shot(page, "service-map")
    first = page.evaluate("() => window.cordonMap.edges()[0].data()")
    page.fill("#map-query", first["source"])
    page.click("#map-find button[type=submit]")
    expect(page.locator("#map-info")).to_contain_text(first["id"])
    shot(page, "service-map-group")
    say(f"map: {n} groups, {e} rules, no overlaps, laid out in {ms} ms; {first['source']} shows {first['id']}")


def phase_readonly(page, host):
    """A read-only user sees no isolate button, and the server refuses the request too."""
    sign_in(page, "READ_TOKEN")
    page.click(f"#hosts tr[data-host='{host}'] a")
    expect(page.locator("h1")).to_contain_text(host)
    if page.locator("#isolate").count() or page.locator("#release").count():
        sys.exit("a read-only user was offered isolate/release")
    shot(page, "host-readonly")
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    url = page.url + "/isolate"
    r = page.request.post(url, form={"csrf": csrf, "reason": "read-only try"}, max_redirects=0)
    if r.status != 403:
        sys.exit(f"a read-only POST to isolate answered {r.status}, not 403")
    say("readonly: no button, the server refused (403)")


def phase_refusals(page, host):
    """A forged or missing CSRF token and a missing session are refused."""
    sign_in(page, "ADMIN_TOKEN")
    page.click(f"#hosts tr[data-host='{host}'] a")
    url = page.url + "/isolate"
    for form in [{"reason": "no csrf"}, {"csrf": "0" * 64, "reason": "forged csrf"}]:
        r = page.request.post(url, form=form, max_redirects=0)
        if r.status != 403:
            sys.exit(f"POST with {form} answered {r.status}, not 403")
    # A browser context without the session cookie.
    other = page.context.browser.new_context()
    r = other.request.post(url, form={"reason": "no session"}, max_redirects=0)
    if r.status != 303 or not r.headers.get("location", "").endswith("/console/signin"):
        sys.exit(f"POST without a session answered {r.status} {r.headers}")
    other.close()
    say("refusals: missing and forged CSRF 403, no session 303 to sign-in")


def phase_screens(page):
    """The remaining screens render with real data (screenshots for the README)."""
    sign_in(page, "ADMIN_TOKEN")
    for name, path, check in [
        ("alerts", "/console/alerts", "#alerts tbody tr"),
        ("response", "/console/response", "#runs tbody tr"),
        ("policy", "/console/policy", "#versions tbody tr"),
        ("audit", "/console/audit", "#audit tbody tr"),
    ]:
        page.goto(BASE + path)
        expect(page.locator(check).first).to_be_visible()
        shot(page, name)
    say("screens: alerts, response, policy, audit")


def main():
    phase, args = sys.argv[1], sys.argv[2:]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_context(viewport={"width": 1360, "height": 860}).new_page()
        errors = []
        # CSP violations and script errors; not the 4xx answers the phases provoke.
        page.on("console", lambda m: m.type == "error" and "Failed to load resource" not in m.text
                and errors.append(m.text))
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            globals()[f"phase_{phase}"](page, *args)
        except Exception:
            print(page.inner_text("body")[:4000], file=sys.stderr)
            raise
        finally:
            browser.close()
        if errors:
            sys.exit(f"browser console errors: {errors}")


if __name__ == "__main__":
    main()
