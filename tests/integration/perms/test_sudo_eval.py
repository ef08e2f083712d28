"""The numbered sudoers cases of issue #19 put to the real sudo (R-ACC-4).

The trees of tests/unit/perms/test_perms_sudoers.py, asked of ``sudo -l -U`` and
``sudo -n`` in a private namespace (tests/harness/sudo_oracle.py): opskit must
answer as sudo does, and both must give the answers the issue expects.
"""
from tests.harness.sudo_oracle import Case, ask_sudo, ours, show
from tests.unit.perms.test_perms_sudoers import CASES

T, P, N = (True, True), (True, False), (False, False)   # no password, password, refused
EXPECT = {
    1: [(("ann", "root", "/usr/bin/date"), N), (("ann", "root", "/usr/bin/id"), P)],
    2: [(("ann", "pgx", "/usr/bin/whoami"), T), (("ann", "root", "/usr/bin/true"), T)],
    3: [(("ann", "root", "/usr/bin/id"), T), (("bob", "root", "/usr/bin/id"), T),
        (("carl", "root", "/usr/bin/id"), P), (("carl", "root", "/usr/bin/date"), T)],
    4: [(("ann", "root", "/usr/bin/true"), P), (("carl", "root", "/usr/bin/id"), P),
        (("carl", "root", "/usr/bin/date"), P)],
    5: [(("ann", "root", "/usr/bin/id"), P), (("bob", "root", "/usr/bin/date"), P)],
    6: [(("carl", "root", "/usr/bin/whoami"), P)],
    7: [(("ann", "root", "/usr/bin/id"), N), (("bob", "root", "/usr/bin/id"), N),
        (("carl", "root", "/usr/bin/date"), N), (("carl", "root", "/usr/bin/id"), P)],
    8: [(("ann", "root", "/usr/bin/id"), P), (("ann", "root", "/usr/bin/date"), N)],
    # Defaults order as sudo applies it: generic/@host/:user/>runas by file order, then !cmnd
    9: [(("ann", "root", "/usr/bin/id"), T), (("ann", "pgx", "/usr/bin/id"), P)],
}
EXTRA = {9: {"/etc/sudoers": "ann ALL = (ALL) /usr/bin/id\nDefaults:ann authenticate\n"
                             "Defaults>root !authenticate\n"}}


def _for_sudo(tree: dict) -> dict:
    """The namespace bind-mounts only /etc/sudoers{,.d}: move other files under it."""
    out = {}
    for path, content in tree.items():
        if path == "/etc/sudo local":
            path = "/etc/sudoers.d/site/with space"
        if path == "/etc/sudoers":
            content = content.replace("@include /etc/sudo\\ local",
                                      "@include /etc/sudoers.d/site/with\\ space")
        out[path] = content
    return out


def test_numbered_cases_agree_with_sudo(tmp_path):
    trees = {**CASES, **EXTRA}
    cases = [Case(_for_sudo(trees[n]), [q for q, _ in EXPECT[n]]) for n in sorted(EXPECT)]
    ask_sudo(cases, str(tmp_path))
    for n, case in zip(sorted(EXPECT), cases):
        expected = [a for _, a in EXPECT[n]]
        assert case.answers == expected, f"case {n}: sudo itself:\n{show(case)}"
        assert ours(case) == expected, f"case {n}: opskit:\n{show(case)}"
