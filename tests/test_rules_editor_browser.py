"""The rules editor on the dashboard's rules page, in real headless Chromium against a real `kairos serve`.

Staff edit as a person does, with the keyboard in CodeMirror's contenteditable
(Playwright's `fill` inserts many lines at once, which no person can, and which
makes Chromium's own editing write inline styles the CSP refuses). Screenshots
of the editor with a marked line are saved under ARTEFACTS.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from conftest import DEMO_RULES, ROOT, free_port

ARTEFACTS = Path(os.environ.get("KAIROS_ARTEFACTS", ROOT / "artefacts"))
EDITOR_JS = ROOT / "server" / "kairos" / "static" / "dashboard" / "editor.js"
# Every report of a refused resource, kept on the page across its own reloads' listeners.
CSP_LISTENER = """
document.addEventListener('securitypolicyviolation', (e) => {
  const seen = JSON.parse(sessionStorage.getItem('csp') || '[]');
  seen.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline'));
  sessionStorage.setItem('csp', JSON.stringify(seen));
});
"""

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def built_editor() -> None:
    if not EDITOR_JS.exists():
        pytest.fail(f"{EDITOR_JS} is missing: `make build` bundles it (dashboard-js/)")


class Staff:
    """A logged-in staff page on the rules page, with the CSP reports and console errors it met."""

    def __init__(self, browser, base: str, token: str, valid: str = "Valid: 3 rules.") -> None:
        self.base = base
        self.page: Page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.add_init_script(CSP_LISTENER)
        self.page.goto(f"{base}/dashboard/login")
        self.page.fill("#token", token)
        self.page.click("#login button[type=submit]")
        self.page.wait_for_url(f"{base}/dashboard")
        self.page.goto(f"{self.base}/dashboard/rules")
        expect(self.content).to_be_visible()
        expect(self.problems).to_contain_text(valid)  # the first check of what is in force, or its absence

    @property
    def content(self) -> Locator:
        return self.page.locator("#rules-editor-view .cm-content")

    @property
    def problems(self) -> Locator:
        return self.page.locator("#rules-problems")

    @property
    def apply(self) -> Locator:
        return self.page.locator("#rules-apply")

    def retype_end(self, text: str, drop: int, typed: str) -> None:
        retype_end(self.page, text, drop, typed)

    def csp_violations(self) -> list[str]:
        reports = self.page.evaluate("JSON.parse(sessionStorage.getItem('csp') || '[]')")
        return reports + [e for e in self.errors if "Content Security Policy" in e]

    def shoot(self, name: str) -> None:
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        self.page.locator("#rules-result").scroll_into_view_if_needed()  # the panel's end, at the page's bottom
        self.page.screenshot(path=str(ARTEFACTS / f"{name}.png"))


def editor_line(page: Page, text: str) -> Locator:
    """The editor's line holding `text`, scrolled to with the mouse wheel (only lines in view are drawn)."""
    line = page.locator("#rules-editor-view .cm-line", has_text=text).first
    page.locator("#rules-editor-view .cm-scroller").hover()
    for _ in range(60):
        if line.count():
            return line
        page.mouse.wheel(0, 240)
        page.wait_for_timeout(30)
    raise AssertionError(f"no line of the editor holds {text!r}")


def retype_end(page: Page, text: str, drop: int, typed: str) -> None:
    """In the rules editor, click the line holding `text`, delete `drop` characters at its end and type `typed`."""
    editor_line(page, text).click()
    expect(page.locator("#rules-editor-view .cm-activeLine")).to_have_text(re.compile(re.escape(text)))
    page.keyboard.press("End")
    for _ in range(drop):
        page.keyboard.press("Backspace")
    page.keyboard.type(typed)


def gutter_number_beside(staff: Staff, line: Locator) -> str:
    """The line number the gutter shows level with an editor line."""
    box = line.bounding_box()
    for number in staff.page.locator("#rules-editor-view .cm-lineNumbers .cm-gutterElement").all():
        b = number.bounding_box()
        if b and b["height"] and abs(b["y"] - box["y"]) < 2:
            return number.inner_text()
    raise AssertionError("no line number beside the line")


def test_an_invalid_edit_marks_its_line_and_apply_waits_for_an_edit_that_validates(serve, browser, tmp_path):
    rules = tmp_path / "rules.yaml"
    shutil.copy(DEMO_RULES, rules)
    in_force = rules.read_text()
    server = serve("memory", rules=rules)
    staff = Staff(browser, server.base, server.admin_token)
    expect(staff.page.locator("#rules-source")).to_contain_text(f"Apply writes {rules.resolve()}")
    expect(staff.apply).to_be_disabled()  # nothing edited yet

    # An invalid value: the server's problem names a line, and that line is marked.
    staff.retype_end("priority: 10", 2, "lots")
    edited = in_force.replace("priority: 10", "priority: lots", 1)
    problem = httpx.post(f"{server.base}/api/rules/check", content=edited, headers=server.auth).json()["problems"][0]
    assert problem["line"] == edited.splitlines().index("    priority: lots") + 1
    expect(staff.problems.locator("button.goto")).to_have_text(f"line {problem['line']}")
    expect(staff.problems).to_contain_text(problem["reason"])
    marked = staff.page.locator("#rules-editor-view .cm-problem-line")
    expect(marked).to_have_count(1)
    expect(marked).to_have_text(re.compile(r"^    priority: lots"))
    assert gutter_number_beside(staff, marked) == str(problem["line"])
    marker = staff.page.locator("#rules-editor-view .cm-problem-gutter .cm-problem-marker")
    expect(marker).to_have_count(1)
    expect(marker).to_have_attribute("title", re.compile(re.escape(problem["reason"])))  # the message on hover
    m, line_box = marker.bounding_box(), marked.bounding_box()
    assert line_box["y"] <= m["y"] + m["height"] / 2 <= line_box["y"] + line_box["height"], "the marker is beside the line"
    expect(staff.page.locator("#rules-editor-view .cm-problem-message")).to_contain_text(problem["reason"])
    expect(staff.content).to_have_attribute("aria-invalid", "true")
    expect(staff.apply).to_be_disabled()

    # The problem's line number in the list takes the cursor back to the line, from anywhere.
    staff.page.keyboard.press("Control+Home")
    expect(staff.page.locator("#rules-editor-view .cm-lineNumbers .cm-activeLineGutter")).to_have_text("1")
    staff.problems.locator("button.goto").click()
    expect(staff.page.locator("#rules-editor-view .cm-lineNumbers .cm-activeLineGutter")).to_have_text(str(problem["line"]))
    expect(marked).to_be_in_viewport()
    staff.page.set_viewport_size({"width": 1280, "height": 800})
    staff.shoot("editor-1280")
    staff.page.set_viewport_size({"width": 1920, "height": 1080})
    staff.problems.locator("button.goto").click()
    staff.shoot("editor-1920")
    # Tab indents in the editor; Esc then Tab moves on, to the problem's line number.
    expect(staff.content).to_be_focused()
    staff.page.keyboard.press("Escape")
    staff.page.keyboard.press("Tab")
    expect(staff.problems.locator("button.goto")).to_be_focused()

    # A valid edit enables Apply; undoing it back to the rules in force disables it again.
    staff.retype_end("priority: lots", 4, "15")
    expect(staff.apply).to_be_enabled()
    expect(marked).to_have_count(0)
    expect(staff.problems).to_have_text("Valid: 3 rules.")
    expect(staff.content).not_to_have_attribute("aria-invalid", "true")
    staff.retype_end("priority: 15", 2, "10")
    expect(staff.apply).to_be_disabled()  # valid, but what is in force already
    expect(staff.problems).not_to_have_attribute("aria-busy", "true")
    expect(staff.problems).to_have_text("Valid: 3 rules.")
    expect(staff.apply).to_be_disabled()
    staff.retype_end("priority: 10", 2, "15")
    expect(staff.apply).to_be_enabled()

    # Applied: the file holds the edit and the server has it in force.
    before = server.api("/admin/rules").json()
    with staff.page.expect_navigation():  # the page reloads to list the rules in force
        staff.apply.click()
    assert rules.read_text() == in_force.replace("priority: 10", "priority: 15", 1)
    after = server.api("/admin/rules").json()
    assert after["version"] == before["version"] + 1
    exit_offer = next(r for r in after["rules"] if r["id"] == "exit-offer")
    assert "priority 15" in exit_offer["summary"], exit_offer
    expect(staff.problems).to_contain_text("Valid: 3 rules.")
    expect(staff.page.locator("#rules-editor")).to_have_value(rules.read_text())  # the field under the editor
    expect(staff.apply).to_be_disabled()  # what is in force now is the text on the page
    assert staff.csp_violations() == []
    staff.page.context.close()


def test_without_a_rules_file_the_editor_says_applied_rules_last_until_a_restart(serve, browser):
    server = serve("memory", rules=None)
    assert "rules:      none (rules put in force from the dashboard are kept in memory, lost at restart)" in server.output()
    staff = Staff(browser, server.base, server.admin_token, valid="No rules in force yet")
    expect(staff.page.locator("#rules-source")).to_have_text(
        "No rules file (the server was started without --rules): Apply changes the rules in memory only, "
        "and a restart loses them.")
    before = server.api("/admin/rules").json()["version"]
    staff.content.click()
    staff.page.keyboard.type("version: 1\nrules: []\n")
    expect(staff.apply).to_be_enabled()
    with staff.page.expect_navigation():
        staff.apply.click()
    assert server.api("/admin/rules").json()["version"] == before + 1
    expect(staff.page.locator("#rules-editor")).to_have_value("version: 1\nrules: []\n")  # in force, in memory
    assert staff.csp_violations() == []
    staff.page.context.close()


def test_applying_from_a_make_run_server_changes_no_file_of_the_repository(browser, tmp_path):
    """`make run` in a fresh clone: Apply writes .kairos/rules.yaml, and git sees no change.

    The clone's run target is run by make itself, with this checkout's virtualenv
    and built assets standing in for the ones it would install (PY_OK, SNIPPET
    and EDITOR emptied, BIN pointed at this interpreter's).
    """
    clone = tmp_path / "kairos"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    def make_run() -> subprocess.Popen:
        log = (tmp_path / "make-run.log").open("ab")
        proc = subprocess.Popen(
            ["make", "-C", str(clone), "run", "PY_OK=", "SNIPPET=", "EDITOR=", f"BIN={Path(sys.executable).parent}",
             "HOST=127.0.0.1", f"PORT={port}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # its own group: make and its server stop together
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "make-run.log").read_text()
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    return proc
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("make run did not serve:\n" + (tmp_path / "make-run.log").read_text())

    def stop(proc: subprocess.Popen) -> None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)

    rules = clone / ".kairos" / "rules.yaml"
    proc = make_run()
    try:
        assert rules.read_text() == (clone / "examples" / "demo.yaml").read_text()
        banner = (tmp_path / "make-run.log").read_text()
        assert "rules:      .kairos/rules.yaml (Apply in the dashboard writes it)" in banner, banner
        token = (clone / ".kairos" / "admin-token").read_text().strip()
        staff = Staff(browser, base, token)
        expect(staff.page.locator("#rules-source")).to_contain_text(f"Apply writes {rules.resolve()}")
        staff.retype_end("code: SAVE10", 2, "15")
        expect(staff.apply).to_be_enabled()
        with staff.page.expect_navigation():
            staff.apply.click()
        assert "code: SAVE15" in rules.read_text()
        status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True, check=True)
        assert status.stdout == "", status.stdout
        assert staff.csp_violations() == []
        staff.page.context.close()
    finally:
        stop(proc)

    # The next `make run` keeps the operator's edited copy: the edit is still in force.
    proc = make_run()
    try:
        assert "code: SAVE15" in rules.read_text()
        token = (clone / ".kairos" / "admin-token").read_text().strip()
        in_force = httpx.get(f"{base}/api/rules", headers={"Authorization": f"Bearer {token}"}, timeout=5).json()
        assert "code: SAVE15" in in_force["text"] and in_force["file"] == str(rules.resolve())
    finally:
        stop(proc)
