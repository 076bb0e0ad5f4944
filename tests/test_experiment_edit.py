"""Ending an experiment in the rules document's text (kairos.experiments.edit): what ship and stop write.

Pure: text in, text out. The edit adds the lines that say the experiment ended
and keeps every other byte, comments and layout included; what it writes is
read back by the rules' own parser.
"""

from __future__ import annotations

import difflib

import pytest
import yaml

from kairos.experiments.edit import end_experiment, stop_holdout
from kairos.rules import parse_rules

WHEN = "2026-12-06T11:30Z"

BLOCK = """\
# The shop's rules.
version: 1
holdout: 5%   # the whole program, measured
rules:
  - id: exit-offer
    when: exit_intent
    then: {show: offer, template: offer.html, params: {headline: "10% off"}}
    # Which words keep them? Half read each.
    experiment:
      variants:
        a: {}     # the rule as written
        b: {then: {params: {headline: "Free shipping"}}}
      holdout: 10%
      # a note at the end of the experiment

  - id: scroll-bar
    when: scroll
    then: {show: bar, template: bar.html, params: {message: Popular}}
"""

FLOW = """\
version: 1
rules:
  - id: exit-offer
    when: exit_intent
    then: {show: offer, template: offer.html, params: {headline: "10% off"}}
    experiment: {variants: {a: {}, b: {then: {params: {headline: "Free shipping"}}}}, holdout: 10% }  # flow
  - id: other
    when: exit_intent
    then: {show: offer, template: offer.html}
    experiment: {
      variants: {a: {}, b: {}},   # two ways
      holdout: 10%,
    }
"""


def added(before: str, after: str) -> list[str]:
    """The lines `after` has that `before` has not; asserting no line of `before` was lost."""
    diff = list(difflib.ndiff(before.splitlines(), after.splitlines()))
    assert not [d for d in diff if d.startswith("- ")], "\n".join(diff)
    return [d[2:] for d in diff if d.startswith("+ ")]


def experiment(text: str, rule: str) -> dict:
    return next(r for r in yaml.safe_load(text)["rules"] if r["id"] == rule)["experiment"]


def test_shipping_in_block_style_adds_two_lines_under_the_experiment_and_keeps_every_comment():
    out = end_experiment(BLOCK, "exit-offer", "b", WHEN)
    assert added(BLOCK, out) == [f"      ended: {WHEN}", "      shipped: b"]
    # Right after its last entry, before the comment that closes it and the next rule.
    assert f"      holdout: 10%\n      ended: {WHEN}\n      shipped: b\n      # a note at the end" in out
    assert experiment(out, "exit-offer")["ended"] == WHEN and experiment(out, "exit-offer")["shipped"] == "b"
    rule = parse_rules(out, "rules.yaml").rule("exit-offer")
    assert not rule.experiment.running and rule.experiment.shipped == "b"


def test_stopping_adds_only_the_end():
    out = end_experiment(BLOCK, "exit-offer", None, WHEN)
    assert added(BLOCK, out) == [f"      ended: {WHEN}"]
    x = parse_rules(out, "rules.yaml").rule("exit-offer").experiment
    assert (x.running, x.ended, x.shipped) == (False, WHEN, None)


def test_flow_style_is_edited_inside_its_braces_on_its_own_line():
    out = end_experiment(FLOW, "exit-offer", "b", WHEN)
    assert added(FLOW, out.replace(f", ended: {WHEN}, shipped: b", "")) == []
    assert f"holdout: 10%, ended: {WHEN}, shipped: b }}  # flow" in out
    assert experiment(out, "exit-offer") == {
        "variants": {"a": {}, "b": {"then": {"params": {"headline": "Free shipping"}}}},
        "holdout": "10%", "ended": WHEN, "shipped": "b"}
    assert "ended" not in experiment(out, "other")


def test_a_flow_mapping_over_several_lines_with_a_trailing_comma_stays_valid():
    out = end_experiment(FLOW, "other", None, WHEN)
    assert f"      holdout: 10%, ended: {WHEN},\n    }}" in out
    assert experiment(out, "other")["ended"] == WHEN
    assert "ended" not in experiment(out, "exit-offer")


def test_a_block_scalar_at_the_end_keeps_its_text_and_the_lines_go_before_the_blank_line():
    text = ("rules:\n  - id: r\n    experiment:\n      variants:\n        a: {}\n        b:\n          then:\n"
            "            params:\n              body: |\n                Two lines\n                of text\n\n"
            "  - id: s\n")
    out = end_experiment(text, "r", "b", WHEN)
    assert "                of text\n      ended: " in out and out.endswith("shipped: b\n\n  - id: s\n")
    assert experiment(out, "r")["variants"]["b"]["then"]["params"]["body"] == "Two lines\nof text\n"


def test_windows_line_endings_stay_windows_line_endings():
    text = BLOCK.replace("\n", "\r\n")
    out = end_experiment(text, "exit-offer", "a", WHEN)
    assert "\n" not in out.replace("\r\n", "")
    assert experiment(out, "exit-offer")["shipped"] == "a"


def test_an_empty_ended_or_shipped_key_is_filled_in_not_repeated():
    text = BLOCK.replace("      holdout: 10%\n", "      holdout: 10%\n      ended:\n      shipped: ~\n")
    out = end_experiment(text, "exit-offer", "b", WHEN)
    assert out.count("ended:") == 1 and out.count("shipped:") == 1
    assert experiment(out, "exit-offer")["ended"] == WHEN and experiment(out, "exit-offer")["shipped"] == "b"


def test_a_value_yaml_would_read_as_something_else_is_quoted():
    out = end_experiment(BLOCK, "exit-offer", "b", "2026-12-06T11:30:00Z")  # with seconds: a YAML timestamp
    assert experiment(out, "exit-offer")["ended"] == "2026-12-06T11:30:00Z"
    text = BLOCK.replace("        b: {then", "        '1': {then")
    out = end_experiment(text, "exit-offer", "1", WHEN)
    assert experiment(out, "exit-offer")["shipped"] == "1"


@pytest.mark.parametrize("text, rule, arm, says", [
    (BLOCK, "no-such-rule", "b", "no rule 'no-such-rule' in the rules document"),
    (BLOCK, "scroll-bar", None, "rule 'scroll-bar' runs no experiment"),
    (BLOCK.replace("    experiment:\n      variants", "    experiment: null\n    x:\n      variants"), "exit-offer", None,
     "rule 'exit-offer' runs no experiment"),
    (BLOCK, "exit-offer", "c", "the experiment of rule 'exit-offer' has no variant 'c': its variants are a, b"),
    (BLOCK, "exit-offer", "holdout", "the holdout is shown nothing, so it cannot be shipped"),
    (BLOCK.replace("      holdout: 10%\n", f"      holdout: 10%\n      ended: {WHEN}\n      shipped: a\n"), "exit-offer",
     "b", f"the experiment of rule 'exit-offer' has already ended ({WHEN}, shipped a)"),
    ("rules: [a, b", "exit-offer", None, "the rules document is not valid YAML"),
    ("- just\n- a list\n", "exit-offer", None, "no rule 'exit-offer'"),
])
def test_each_refusal_names_the_problem(text, rule, arm, says):
    with pytest.raises(ValueError) as exc:
        end_experiment(text, rule, arm, WHEN)
    assert says in str(exc.value)


def test_stopping_the_program_holdout_zeroes_it_and_says_what_it_was():
    out = stop_holdout(BLOCK, WHEN)
    assert added(BLOCK, out.replace("holdout: 0%   # the whole", "holdout: 5%   # the whole")) == [
        f"# the program's holdout was 5%, stopped {WHEN}: every visitor gets the nudges"]
    assert yaml.safe_load(out)["holdout"] == "0%"
    assert parse_rules(out, "rules.yaml").holdout == 0
    assert experiment(out, "exit-offer")["holdout"] == "10%"  # a rule's own holdout is another matter


@pytest.mark.parametrize("text", [BLOCK.replace("holdout: 5%", "holdout: 0%"), FLOW, "rules: []\nholdout:\n"])
def test_there_is_no_program_holdout_to_stop_without_one(text):
    with pytest.raises(ValueError, match="keeps no visitors from every nudge"):
        stop_holdout(text, WHEN)
