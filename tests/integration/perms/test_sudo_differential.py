"""opskit's sudoers evaluator against the real sudo on generated trees (#19, R-ACC-4).

200 trees from a fixed seed (tests/harness/sudoers_gen.py), 8 questions each, asked
of ``sudo -l -U`` and ``sudo -n`` in a private namespace (tests/harness/sudo_oracle.py).
Every answer must agree; a disagreement fails with the minimal tree. The permission
view (evaluate) must not under-report: whatever sudo allows, an item covers, and what
sudo runs without a password, a covering item says so.
"""
from tests.harness.sudo_oracle import (digest, disagreements, minimal, show, view_answers,
                                       view_misses)
from tests.harness.sudoers_gen import generate

SEED = 19
TREES = 200


def test_generated_trees_agree_with_sudo(tmp_path):
    from tests.harness.sudo_oracle import ask_sudo
    cases = ask_sudo(generate(SEED, TREES), str(tmp_path / "all"))
    assert len(cases) >= 200
    # the generator must reach the interesting outcomes, or agreement proves little
    answers = [a for c in cases for a in c.answers]
    assert {(True, True), (True, False), (False, False)} <= set(answers)
    bad = disagreements(cases)
    under = view_misses(cases)
    if under and not bad:
        n, k = under[0]
        raise AssertionError(f"the permission view under-reports {len(under)} of "
                             f"{len(answers)} answers; first (tree {n}) {cases[n].questions[k]}"
                             f", view (covered, no password) = "
                             f"{view_answers(cases[n])[k]}:\n{show(cases[n])}")
    if bad:
        n, k = bad[0]
        small = minimal(cases[n], k, str(tmp_path))
        raise AssertionError(f"{len(bad)} of {len(answers)} answers disagree with sudo; "
                             f"first (tree {n}) minimised:\n{show(small)}")


# --- findings of the differential probe against sudo 1.9.13 (R-ACC-4) -----------------
# Each tree is put to the real sudo; opskit's answer to every question (check) and its
# permission view (evaluate: no under-reporting) must agree with it.
S = "/etc/sudoers"
ID256, ID224 = digest("sha256", "/usr/bin/id"), digest("sha224", "/usr/bin/id")
ID512_B64 = digest("sha512", "/usr/bin/id", base64=True)
Q_BOB = [("bob", "root", "/usr/bin/id"), ("bob", "root", "/usr/bin/date"),
         ("ann", "root", "/usr/bin/id")]
Q_ANN = [("ann", "root", "/usr/bin/id"), ("ann", "pgx", "/usr/bin/id"),
         ("ann", "root", "/usr/bin/date"), ("bob", "root", "/usr/bin/id")]
FINDINGS = {
    # 1. case_insensitive_user / case_insensitive_group are on by default
    "upper_user": ({S: "BOB ALL=(root) NOPASSWD: /usr/bin/id\n"}, Q_BOB),
    "mixed_user": ({S: "Bob ALL=(root) NOPASSWD: /usr/bin/id\n"}, Q_BOB),
    "upper_group": ({S: "%DEV ALL=(root) NOPASSWD: /usr/bin/id\n"}, Q_BOB),
    "mixed_user_in_list": ({S: "carl, Bob ALL=(root) /usr/bin/id\n"}, Q_BOB),
    "defaults_mixed_user": ({S: "Defaults:Bob !authenticate\nbob ALL=(root) /usr/bin/id\n"},
                            Q_BOB),
    "defaults_upper_group": ({S: "Defaults:%OPS !authenticate\nbob ALL=(root) /usr/bin/id\n"},
                             Q_BOB),
    "upper_runas": ({S: "bob ALL=(ROOT) NOPASSWD: /usr/bin/id\n"}, Q_BOB),
    "user_ci_off": ({S: "Defaults !case_insensitive_user\nBob ALL=(root) NOPASSWD: /usr/bin/id\n"
                        "bob ALL=(root) /usr/bin/date\n"}, Q_BOB),
    "group_ci_off": ({S: "Defaults !case_insensitive_group\n"
                         "%DEV ALL=(root) NOPASSWD: /usr/bin/id\n%dev ALL=(root) /usr/bin/date\n"},
                     Q_BOB),
    # 2. a command may carry digests (sudo checks them; opskit reports the command)
    "digest_after_other": ({S: f"bob ALL=(root) NOPASSWD: /usr/bin/date, {ID256} /usr/bin/id\n"},
                           Q_BOB),
    "digest_first": ({S: f"bob ALL=(root) NOPASSWD: {ID256} /usr/bin/id, /usr/bin/date\n"},
                     Q_BOB),
    "digest_alias": ({S: f"Cmnd_Alias ID = {ID256} /usr/bin/id\nbob ALL=(root) NOPASSWD: ID\n"},
                     Q_BOB),
    "digest_base64": ({S: f"bob ALL=(root) NOPASSWD: {ID512_B64} /usr/bin/id\n"}, Q_BOB),
    "digest_list": ({S: f"bob ALL=(root) {ID224}, {ID256} /usr/bin/id, NOPASSWD: /usr/bin/date\n"},
                    Q_BOB),
    "digest_after_bang": ({S: f"bob ALL=(root) NOPASSWD: /usr/bin/date, !{ID256} /usr/bin/id\n"
                              "ann ALL=(root) NOPASSWD: /usr/bin/id\n"}, Q_BOB),
    # 4. exempt_group set by Defaults>runas (and Defaults!cmnd)
    "exempt_runas": ({S: "Defaults>root exempt_group=ops\nann ALL=(root) /usr/bin/id\n"}, Q_ANN),
    "exempt_cmnd": ({S: "Defaults!/usr/bin/id exempt_group=ops\nann ALL=(root) /usr/bin/id, "
                        "/usr/bin/date\n"}, Q_ANN),
    "exempt_upper_group": ({S: "Defaults exempt_group=OPS\nann ALL=(root) /usr/bin/id\n"}, Q_ANN),
    "exempt_runas_other": ({S: "Defaults>pgx exempt_group=ops\nann ALL=(root, pgx) /usr/bin/id\n"},
                           Q_ANN),
    # 3. Defaults>runas for a rule whose run-as is ALL, a list or a Runas_Alias
    "runas_all_defaults_root": ({S: "Defaults>root !authenticate\nann ALL=(ALL) ALL\n"}, Q_ANN),
    "runas_all_groups": ({S: "Defaults>root !authenticate\nann ALL=(ALL:ALL) /usr/bin/id\n"},
                         Q_ANN),
    "runas_list_defaults": ({S: "Defaults>root !authenticate\nann ALL=(root, pgx) /usr/bin/id\n"},
                            Q_ANN),
    "runas_alias_defaults": ({S: "Runas_Alias R = root, pgx\nDefaults>R !authenticate\n"
                                 "ann ALL=(R) /usr/bin/id\n"}, Q_ANN),
    "runas_defaults_all": ({S: "Defaults>ALL !authenticate\nann ALL=(ALL) ALL\n"}, Q_ANN),
    "runas_then_generic": ({S: "Defaults>root !authenticate\nDefaults authenticate\n"
                               "ann ALL=(ALL) /usr/bin/id\n"}, Q_ANN),
    "runas_defaults_back_on": ({S: "Defaults !authenticate\nDefaults>pgx authenticate\n"
                                   "ann ALL=(ALL) /usr/bin/id\n"}, Q_ANN),
    "runas_two_apart": ({S: "Defaults>root !authenticate\nDefaults>pgx authenticate\n"
                            "ann ALL=(root, pgx, carl) /usr/bin/id\n"}, Q_ANN),
    "runas_defaults_upper": ({S: "Defaults>ROOT !authenticate\nann ALL=(root, pgx) /usr/bin/id\n"},
                             Q_ANN),
    # 5. Defaults!cmnd inside a command pattern (ALL, /usr/bin/*, /usr/bin/)
    "cmnd_defaults_in_all": ({S: "Defaults!/usr/bin/id !authenticate\nann ALL=(root) ALL\n"},
                             Q_ANN),
    "cmnd_defaults_in_glob": ({S: "Defaults!/usr/bin/id !authenticate\n"
                                  "ann ALL=(root) /usr/bin/*\n"}, Q_ANN),
    "cmnd_defaults_in_dir": ({S: "Cmnd_Alias C = /usr/bin/id\nDefaults!C !authenticate\n"
                                 "ann ALL=(ALL) /usr/bin/\n"}, Q_ANN),
    "cmnd_and_runas": ({S: "Defaults>pgx !authenticate\nDefaults!/usr/bin/id !authenticate\n"
                           "Defaults>pgx authenticate\nann ALL=(ALL) ALL\n"}, Q_ANN),
}


def _finding_cases():
    from tests.harness.sudo_oracle import Case
    return {name: Case(tree, list(qs)) for name, (tree, qs) in FINDINGS.items()}


def test_probe_findings_agree_with_sudo(tmp_path):
    from tests.harness.sudo_oracle import ask_sudo, ours, view_answers
    named = _finding_cases()
    ask_sudo(list(named.values()), str(tmp_path))
    wrong = []
    for name, case in named.items():
        if ours(case) != case.answers:
            wrong.append(f"{name}: opskit answers differ from sudo:\n{show(case)}")
        for q, (v_allowed, v_free), (allowed, ran) in zip(case.questions, view_answers(case),
                                                          case.answers):
            if (allowed and not v_allowed) or (ran and not v_free):
                wrong.append(f"{name}: the view under-reports {q}: view (covered, no "
                             f"password) = {(v_allowed, v_free)}, sudo = {(allowed, ran)}")
    assert not wrong, "\n".join(wrong)
