"""What a rules document may contain: addresses an overlay may link to, its size, and where its model files are.

Issue 13: a `javascript:` link in an overlay (finding 1), a YAML alias bomb
(finding 6), and a `model:` path that told staff whether any file on the
server exists (finding 8). Each refusal reaches `kairos check`, the hot
reload and the editor alike: they all go through parse_rules.
"""

from __future__ import annotations

import logging
import os
import shutil
import textwrap
import tracemalloc
from pathlib import Path

import httpx
import pytest

from kairos.render import Renderer, scrub
from kairos.rules import RulesError, parse_rules
from kairos.rules.bounds import MAX_DOCUMENT_BYTES, MAX_VALUES, expanded_values
from kairos.rules.model import Then
from kairos.session import SessionState

ROOT = Path(__file__).resolve().parents[1]
OVERLAYS = ROOT / "templates" / "overlays"
RENDERER = Renderer(OVERLAYS)


def offer(params: str, template: str = "offer.html") -> str:
    """A rules document with one rule showing `template` with the given `params:` lines (flow mapping)."""
    return textwrap.dedent(f"""\
        version: 1
        rules:
          - id: exit-offer
            when: exit_intent
            then:
              show: offer
              template: {template}
              params: {params}
        """)


def problems(text: str, renderer: Renderer = RENDERER, **kw) -> list[str]:
    """What kairos check says of a document: its problems, one a line; [] when it loads."""
    try:
        parse_rules(text, "rules.yaml", renderer.names(), renderer.problem, **kw)
    except RulesError as exc:
        return [str(p) for p in exc.problems]
    return []


# --- addresses: kairos check, the hot reload and the editor ---------------------------------

FIX = "write an https:// address or a path on the store, such as `/cart` or `https://shop.example/sale`"
RUNS = "which runs code on the store's page when it is clicked"


@pytest.mark.parametrize(("written", "reason"), [
    ('"javascript:alert(1)"', f"'javascript:alert(1)' is a javascript: link, {RUNS}: {FIX}"),
    ('"JaVaScRiPt:alert(1)"', f"'JaVaScRiPt:alert(1)' is a javascript: link, {RUNS}: {FIX}"),
    ('"  javascript:alert(1)"', f"'  javascript:alert(1)' is a javascript: link, {RUNS}: {FIX}"),
    ('"java\\tscript:alert(1)"', "'java\\tscript:alert(1)' has an invisible character (a tab, line break or control "
                                 f"character) in it, which a browser drops before it reads the address: {FIX}"),
    ('"\\x01javascript:alert(1)"', "'\\x01javascript:alert(1)' has an invisible character (a tab, line break or "
                                   f"control character) in it, which a browser drops before it reads the address: {FIX}"),
    ('"&#106;avascript:alert(1)"', f"'&#106;avascript:alert(1)' is a javascript: link once its &…; codes are read, "
                                   f"{RUNS}: {FIX}"),
    ('"javascript&colon;alert(1)"', f"'javascript&colon;alert(1)' is a javascript: link once its &…; codes are read, "
                                    f"{RUNS}: {FIX}"),
    ('"vbscript:msgbox(1)"', f"'vbscript:msgbox(1)' is a vbscript: link, {RUNS}: {FIX}"),
    ('"data:text/html,<script>alert(1)</script>"', "'data:text/html,<script>alert(1)</script>' is a data: link, "
                                                   f"which carries a page or a script of its own: {FIX}"),
    ('"mailto:shop@example.com"', "'mailto:shop@example.com' is a mailto: link, which is not a web address; an overlay "
                                  f"links only to http, https or a path on the store: {FIX}"),
], ids=["javascript", "mixed-case", "space-padded", "tab-inside", "control-first", "entity", "named-entity", "vbscript",
        "data", "mailto"])
def test_an_overlay_link_that_is_not_http_or_a_store_path_is_refused_with_its_line(written, reason):
    text = offer(f"{{body: Take 10% off., cta: Go, href: {written}}}")
    assert problems(text) == [f"rules.yaml:8: rules[0].then.params.href: {reason}"]


@pytest.mark.parametrize("href", ["/cart", "cart", "?q=shirt", "#top", "//shop.example/sale", "https://shop.example/sale",
                                  "HTTP://shop.example/", "/search?q=a:b"])
def test_http_https_and_paths_on_the_store_are_links_an_overlay_may_have(href):
    assert problems(offer(f'{{body: Take 10% off., href: "{href}"}}')) == []


@pytest.mark.parametrize("name", ["url", "link", "src", "cart_url", "image_src", "more_link", "help_href"])
def test_a_parameter_named_as_an_address_is_refused_whatever_the_template_does_with_it(name):
    # offer.html uses none of these: the template of tomorrow may.
    text = offer(f'{{body: Take 10% off., {name}: "javascript:alert(1)"}}')
    assert problems(text) == [f"rules.yaml:8: rules[0].then.params.{name}: 'javascript:alert(1)' is a javascript: "
                              f"link, {RUNS}: {FIX}"]


def test_an_address_deep_in_the_params_is_refused_at_its_own_line():
    text = offer("{body: Hi, more: {links: [{url: /a}, {url: 'javascript:alert(1)'}]}}")
    assert problems(text) == [f"rules.yaml:8: rules[0].then.params.more.links[1].url: 'javascript:alert(1)' is a "
                              f"javascript: link, {RUNS}: {FIX}"]


@pytest.fixture
def overlays(tmp_path: Path) -> Path:
    """A copy of templates/overlays/ a test may add a template to."""
    out = tmp_path / "overlays"
    shutil.copytree(OVERLAYS, out)
    return out


def test_a_new_template_that_puts_any_parameter_in_an_address_gets_it_checked(overlays):
    # Named like nothing an address is called: only where the template puts it tells.
    (overlays / "promo.html").write_text(
        '<div class="k-promo"><p>{{ message }}</p><a href="{{ params.whatever }}" data-k-click>Go</a>'
        '<form action="{{ target | lower }}"><button>Send</button></form></div>\n')
    renderer = Renderer(overlays)
    bad = offer("{message: Hi, whatever: 'javascript:alert(1)', target: /ok}", "promo.html")
    assert problems(bad, renderer) == [f"rules.yaml:8: rules[0].then.params.whatever: 'javascript:alert(1)' is a "
                                       f"javascript: link, {RUNS}: {FIX}"]
    bad_form = offer("{message: Hi, whatever: /ok, target: ' JAVASCRIPT:alert(1)'}", "promo.html")
    assert problems(bad_form, renderer)[0].startswith("rules.yaml:8: rules[0].then.params.target: ' JAVASCRIPT:")
    assert problems(offer("{message: Hi, whatever: /sale, target: /subscribe}", "promo.html"), renderer) == []


def test_a_parameter_a_template_puts_in_a_link_through_a_variable_is_checked():
    # bar.html: {% set href = link … %} then href="{{ href }}"
    text = offer("{message: Free shipping, link_text: See, link: ' javascript:alert(1)'}", "bar.html")
    assert problems(text) == [f"rules.yaml:8: rules[0].then.params.link: ' javascript:alert(1)' is a javascript: "
                              f"link, {RUNS}: {FIX}"]


def test_a_link_made_of_two_harmless_parameters_is_refused_at_the_template(overlays):
    (overlays / "joined.html").write_text('<a href="{{ scheme }}{{ rest }}" data-k-click>{{ message }}</a>\n')
    text = offer("{message: Hi, scheme: javascript, rest: ':alert(1)'}", "joined.html")
    assert problems(text, Renderer(overlays)) == [
        "rules.yaml:7: rules[0].then.template: template 'joined.html' makes the link href='javascript:alert(1)', "
        "which is not an http(s) address or a path on the store: change the template, or the params it puts in the link"]


# --- addresses: the renderer, for what gets past the check ----------------------------------


def unchecked(template: str = "offer.html", show: str = "offer", **params) -> Then:
    """A `then` built without validation: a rule put in force some way that skips parse_rules."""
    return Then.model_construct(show=show, template=template, place=None, ttl_s=0, params=params)


def test_the_renderer_drops_a_javascript_link_that_got_past_the_check_and_logs_it(caplog):
    then = unchecked(body="Take 10% off.", href="JaVa\tscript:window.__pwned=1", cta="Go")
    with caplog.at_level(logging.WARNING, logger="kairos.render"):
        html, _ = RENDERER.render(then, SessionState(sid="s_1"))
    assert "script:" not in html.lower()
    assert '<a class="k-cta" data-k-click>Go</a>' in html, "the link stays, without its address"
    assert [r.getMessage() for r in caplog.records] == [
        "overlay offer.html: dropped href='JaVa\\tscript:window.__pwned=1': not an http(s) address or a path on the store"]


def test_the_renderer_drops_a_product_address_from_the_session_that_is_not_http():
    # bar.html links back to the product last looked at: an address the page reported.
    state = SessionState(sid="s_1", product={"name": "Shirt", "url": "javascript:window.__pwned=1"})
    html, _ = RENDERER.render(unchecked("bar.html", "bar", message="Still here", link_text="See it"), state)
    assert "javascript" not in html and '<a class="k-link" data-k-click>See it</a>' in html
    state = SessionState(sid="s_1", product={"name": "Shirt", "url": "https://shop.example/products/shirt"})
    html, _ = RENDERER.render(unchecked("bar.html", "bar", message="Still here", link_text="See it"), state)
    assert 'href="https://shop.example/products/shirt"' in html


def test_scrub_leaves_everything_but_the_bad_address_as_the_template_made_it():
    text = ('<p class="x">A &amp; B</p>\n<a href="/cart" data-k-click>ok</a>'
            '<img\n  src="data:image/svg+xml,<svg onload=alert(1)>" alt="a &quot;b&quot;"/><a href="&#106;avascript:x">')
    out, dropped = scrub(text)
    assert out == ('<p class="x">A &amp; B</p>\n<a href="/cart" data-k-click>ok</a>'
                   '<img alt="a &quot;b&quot;" /><a>')
    assert dropped == (("src", "data:image/svg+xml,<svg onload=alert(1)>"), ("href", "javascript:x"))


# --- size: a YAML alias bomb -----------------------------------------------------------------


def alias_bomb(levels: int = 7) -> str:
    """A rules document of about 500 bytes whose anchors expand to 10**levels values."""
    lines = ["version: 1", "rules:", "  - id: a", "    when: exit_intent", "    then:", "      show: offer",
             "      template: offer.html", "      params:", "        body: x",
             "        l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"        l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_before_it_is_built_in_a_bounded_memory():
    text = alias_bomb()
    assert len(text) < 610
    tracemalloc.start()
    try:
        found = problems(text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert found == [f"rules.yaml: expands to more than {MAX_VALUES:,} values through YAML anchors (&) and aliases (*): "
                     "a rules file has a few hundred (examples/demo.yaml has 170); write the values out, or use "
                     "fewer aliases"]
    # Built, the ten million values took 458 MB; refused from the composed text, a few hundred kB.
    assert peak < 2_000_000, f"peak {peak:,} bytes"


def test_aliases_that_stay_small_are_still_fine():
    text = alias_bomb(levels=3)  # a thousand values
    assert problems(text) == []


def test_an_alias_inside_its_own_anchor_is_refused():
    text = "version: 1\nrules: []\npage_types: &a {x: [*a]}\n"
    assert problems(text) == ["rules.yaml: an alias (*) inside the value its anchor (&) names: the value would contain "
                              "itself; write the value out instead"]


def test_a_document_over_the_text_bound_is_refused_before_it_is_read():
    text = "version: 1\nrules: []\n#" + "x" * MAX_DOCUMENT_BYTES + "\n"
    assert problems(text) == [f"rules.yaml: {len(text):,} bytes: a rules document is at most {MAX_DOCUMENT_BYTES:,} "
                              "bytes (examples/demo.yaml is 2.5 KB)"]


def test_every_example_is_far_below_the_bounds():
    import yaml

    for path in sorted((ROOT / "examples").rglob("*.yaml")):
        text = path.read_text()
        values, _ = expanded_values(yaml.compose(text))
        assert values * 100 < MAX_VALUES and len(text.encode()) * 50 < MAX_DOCUMENT_BYTES, path


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_the_editors_check_refuses_the_bomb_and_the_server_stays_small(serve):
    server = serve("memory")
    before = _rss_kb(server.proc.pid)
    r = httpx.post(f"{server.base}/api/rules/check", content=alias_bomb(), headers=server.auth, timeout=30)
    after = _rss_kb(server.proc.pid)
    assert r.status_code == 200 and r.json()["ok"] is False
    assert r.json()["problems"][0]["reason"].startswith(f"expands to more than {MAX_VALUES:,} values through YAML anchors")
    # 458 MB before the bound; measured with it: under 1 MB.
    assert after - before < 20_000, f"RSS grew by {after - before} kB"


# --- model files: inside the models directory ------------------------------------------------

MODEL_RULES = "version: 1\nscores:\n  intent: {model: %s}\n"


def model_problem(written: str, base: Path | None) -> str:
    found = problems(MODEL_RULES % written, base_dir=base)
    assert len(found) == 1, found
    return found[0]


def outside(written: str) -> str:
    return (f"rules.yaml:3: scores.intent.model: {written!r} is not a path inside the rules file's folder: name the "
            "model file by its path from there, such as `models/intent.json` (no leading /, ~ or .. out of the folder)")


@pytest.mark.parametrize("written", ["/etc/passwd", "/etc/no-such-file", "../rules-secret.json",
                                     "models/../../rules-secret.json", "~/model.json"])
def test_a_model_path_outside_the_rules_folder_is_refused_without_saying_whether_it_exists(tmp_path, written):
    base = tmp_path / "rules"
    base.mkdir()
    (tmp_path / "rules-secret.json").write_text("{}")
    assert model_problem(written, base) == outside(written)


def test_a_symbolic_link_out_of_the_rules_folder_is_refused_like_any_path_outside(tmp_path):
    base = tmp_path / "rules"
    (base / "models").mkdir(parents=True)
    (tmp_path / "secret.json").write_text("{}")
    os.symlink(tmp_path / "secret.json", base / "models" / "there.json")
    os.symlink(tmp_path / "missing.json", base / "models" / "nowhere.json")
    os.symlink(tmp_path, base / "models" / "up")
    for written in ("models/there.json", "models/nowhere.json", "models/up/secret.json"):
        assert model_problem(written, base) == outside(written)


def test_a_model_inside_the_rules_folder_is_read_and_a_missing_one_named(tmp_path):
    base = tmp_path / "rules"
    (base / "models").mkdir(parents=True)
    (base / "models" / "broken.json").write_text("{not json")
    assert model_problem("models/broken.json", base).startswith(
        f"rules.yaml:3: scores.intent.model: {base / 'models' / 'broken.json'}: not JSON")
    assert model_problem("models/./gone.json", base).startswith(
        f"rules.yaml:3: scores.intent.model: {base / 'models' / 'gone.json'}: cannot read it")


def test_rules_without_a_file_have_no_models_directory():
    assert model_problem("model.json", None) == (
        "rules.yaml:3: scores.intent.model: a model file is read from the rules file's folder, and these rules have no "
        "file (the server was started without --rules): start it with --rules FILE and put the model beside that file")


def test_the_editor_answers_alike_for_a_file_that_exists_and_one_that_does_not(serve, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nrules: []\n")
    server = serve("memory", rules=rules)

    def check(written: str) -> str:
        r = httpx.post(f"{server.base}/api/rules/check", content=MODEL_RULES % written, headers=server.auth, timeout=10)
        return r.json()["problems"][0]["reason"]

    assert check("/etc/passwd").replace("/etc/passwd", "X") == check("/etc/no-such-file").replace("/etc/no-such-file", "X")
    assert "cannot read" not in check("/etc/shadow") and "No such file" not in check("/etc/no-such-file")
