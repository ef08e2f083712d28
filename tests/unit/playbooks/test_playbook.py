"""Playbook files: format, variables, substitution without a shell, the shipped ones."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from opskit.core.errors import ConfigError, UsageError
from opskit.core.yamlfile import parse_yaml
from opskit.playbooks.engine import (find_playbook, load_playbook, parse_kv, parse_playbook,
                                      run_playbook)

REPO = Path(__file__).resolve().parents[3]
SHIPPED = sorted((REPO / "playbooks").glob("*.yaml"))


def book(text: str, name: str = "/srv/pb.yaml"):
    return parse_playbook(parse_yaml(text, name))


BASIC = """
name: basic
vars:
  who: {required: true, description: a person}
  mode: {default: fast, choices: [fast, slow]}
  extra: {}
steps:
  - name: say
    run: [say, "{{who}}", "--mode={{ mode }}"]
  - name: only with extra
    run: [more, "{{extra}}"]
    when: extra
  - signoff: "{{who}} done"
"""


def test_the_shipped_playbooks_are_all_there_and_valid():
    names = {p.stem for p in SHIPPED}
    assert names == {"onboard", "offboard", "restore-drill", "incident-restore", "access-review"}
    for path in SHIPPED:
        pb = load_playbook(str(path))
        assert pb.steps and pb.rules, path
        assert pb.steps[-1].signoff, f"{path}: ends with a sign-off entry"


def test_offboard_freezes_then_proves_no_access_then_signs_off():
    pb = load_playbook(str(REPO / "playbooks" / "offboard.yaml"))
    plan = pb.plan(pb.resolve({"person": "zhang.wei", "ticket": "HR-1"}))
    assert plan[0]["argv"] == ["users", "freeze", "zhang.wei", "--reason", "departure",
                               "--ticket", "HR-1"]
    assert plan[1]["argv"] == ["perms", "snapshot"]
    assert plan[2]["argv"] == ["perms", "diff", "--person", "zhang.wei"]
    assert plan[2]["expect_exit"] == [0]           # differences (exit 1) stop the playbook
    assert "R-ACC-6" in plan[3]["signoff"] and "zhang.wei" in plan[3]["signoff"]
    assert "R-ACC-6" in pb.rules


def test_resolve_defaults_required_unknown_and_choices():
    pb = book(BASIC)
    assert pb.resolve({"who": "a"}) == {"who": "a", "mode": "fast", "extra": ""}
    with pytest.raises(UsageError, match=r"/srv/pb.yaml: missing required variable 'who'"):
        pb.resolve({})
    with pytest.raises(UsageError, match=r"/srv/pb.yaml: unknown variable 'whom'"):
        pb.resolve({"who": "a", "whom": "b"})
    with pytest.raises(UsageError, match="expected one of: fast, slow"):
        pb.resolve({"who": "a", "mode": "medium"})


def test_substitution_is_per_word_and_never_a_shell():
    pb = book(BASIC)
    plan = pb.plan(pb.resolve({"who": "x; rm -rf / $(id)", "mode": "slow"}))
    assert plan[0]["argv"] == ["say", "x; rm -rf / $(id)", "--mode=slow"]
    assert plan[1]["skipped"] is True
    assert plan[2]["signoff"] == "x; rm -rf / $(id) done"


@pytest.mark.parametrize("text,line,key,words", [
    ("steps:\n  - run: [a, '{{nope}}']\n", 2, "steps[0].run[1]", "unknown variable {{nope}}"),
    ("steps:\n  - run: [a]\n    signoff: x\n", 2, "steps[0]", "either 'run'"),
    ("steps:\n  - run: [opskit, a]\n", 2, "steps[0].run", "leading 'opskit'"),
    ("steps:\n  - run: [a]\n    expect: [0]\n", 3, "steps[0].expect", "unknown key"),
    ("vars:\n  v: {required: true, default: x}\nsteps:\n  - run: [a]\n", 2, "vars.v",
     "either required or has a default"),
    ("steps: []\n", 1, "steps", "at least one step"),
    ("steps:\n  - run: [a]\n    when: ghost\n", 3, "steps[0].when", "unknown variable"),
])
def test_playbook_mistakes_name_file_line_and_key(text, line, key, words):
    with pytest.raises(ConfigError) as err:
        book(text)
    assert str(err.value).startswith(f"/srv/pb.yaml:{line}: key '{key}'"), str(err.value)
    assert words in str(err.value) and err.value.exit_code == 2


def test_parse_kv():
    assert parse_kv(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    for bad in (["novalue"], ["1a=2"], ["a=1", "a=2"]):
        with pytest.raises(UsageError):
            parse_kv(bad)


def test_find_playbook_by_name_falls_back_to_the_shipped_ones():
    assert find_playbook("offboard").endswith("playbooks/offboard.yaml")
    with pytest.raises(UsageError, match="no playbook 'nothing-like-this'"):
        find_playbook("nothing-like-this")


STUB = "import sys; print('out', *sys.argv[1:]); sys.exit(int(sys.argv[1]))"


def test_run_stops_at_the_first_failure_and_audits_each_step():
    pb = book("vars:\n  c: {default: '3'}\nsteps:\n  - run: ['0']\n  - run: ['{{c}}']\n"
              "  - run: ['0']\n  - signoff: never\n")
    seen = []
    result = run_playbook(pb, pb.resolve({}), audit=lambda *a: seen.append(a),
                          launcher=(sys.executable, "-c", STUB))
    rows = result.tables[0].rows
    assert [r["status"] for r in rows] == ["ok", "FAILED", "not run", "not run"]
    assert [r["exit"] for r in rows[:2]] == [0, 3]
    assert result.exit_code == 3 and "stopped at step 2" in result.summary
    assert [(a[0], a[1]["step"], a[3]) for a in seen] == [("step", 1, 0), ("step", 2, 3)]


def test_expect_exit_accepts_findings_and_exit_1_failure_maps_to_1():
    pb = book("steps:\n  - run: ['1']\n    expect_exit: [0, 1]\n  - run: ['1']\n")
    result = run_playbook(pb, {}, launcher=(sys.executable, "-c", STUB))
    assert [r["status"] for r in result.tables[0].rows] == ["ok", "FAILED"]
    assert result.exit_code == 1


def test_dry_run_runs_nothing():
    pb = book("steps:\n  - run: ['3']\n  - signoff: x\n")
    seen = []
    result = run_playbook(pb, {}, dry_run=True, audit=lambda *a: seen.append(a),
                          launcher=(sys.executable, "-c", "raise SystemExit(9)"))
    assert result.exit_code == 0 and seen == []
    assert [r["status"] for r in result.tables[0].rows] == ["would run", "would run"]
