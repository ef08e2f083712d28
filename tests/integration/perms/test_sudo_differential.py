"""opskit's sudoers evaluator against the real sudo on generated trees (#19, R-ACC-4).

200 trees from a fixed seed (tests/harness/sudoers_gen.py), 8 questions each, asked
of ``sudo -l -U`` and ``sudo -n`` in a private namespace (tests/harness/sudo_oracle.py).
Every answer must agree; a disagreement fails with the minimal tree.
"""
from tests.harness.sudo_oracle import disagreements, minimal, show
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
    if bad:
        n, k = bad[0]
        small = minimal(cases[n], k, str(tmp_path))
        raise AssertionError(f"{len(bad)} of {len(answers)} answers disagree with sudo; "
                             f"first (tree {n}) minimised:\n{show(small)}")
