"""The real sudo as an oracle for opskit.hosts.sudoers.evaluate.

``ask_sudo(cases)`` runs, in ONE private namespace (``unshare -m -u -n``:
mounts, host name and network are the namespace's own, nothing outside
changes), for every case -- a sudoers tree and questions ``(user, runas,
command)`` -- with the tree copied over the bind-mounted /etc/sudoers and
/etc/sudoers.d:

* ``sudo -l -U USER -u RUNAS COMMAND`` (exit 0: sudo allows it), and when it
  is allowed
* ``sudo -n -u RUNAS COMMAND`` as USER (``setpriv``; exit 0: it ran without
  a password).

The namespace has the test users of ``USERS`` in private /etc/passwd, group
and shadow files, host name ``h1`` (FQDN ``h1.example.test`` in a private
/etc/hosts) and one interface ``b0`` with 10.1.2.3/24 (``HOST``).
"""
from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass, field

import pytest

from opskit.hosts.sudoers.evaluate import HostIdentity, SudoUser
from tests.harness.mountns import tool

HOST = HostIdentity("h1", "h1.example.test", ("10.1.2.3/24",))
# login: (uid, primary gid, supplementary groups)
USERS = {"ann": (2001, 2001, ("ops",)), "bob": (2002, 2002, ("ops", "dev")),
         "carl": (2003, 2003, ()), "pgx": (2050, 2050, ())}
GROUPS = {"ann": 2001, "bob": 2002, "carl": 2003, "pgx": 2050, "ops": 2100, "dev": 2200}


def digest(algorithm: str, path: str, base64: bool = False) -> str:
    """``sha256:<hex>`` (or base64) of a file here, as a sudoers command digest."""
    import base64 as b64
    import hashlib
    with open(path, "rb") as fh:
        raw = hashlib.new(algorithm, fh.read()).digest()
    return f"{algorithm}:{b64.b64encode(raw).decode() if base64 else raw.hex()}"


def sudo_user(login: str) -> SudoUser:
    """The SudoUser for a test login (what opskit reads from /etc/passwd and group)."""
    uid, gid, extra = USERS[login]
    names = {n for n, g in GROUPS.items() if g == gid} | set(extra)
    return SudoUser(login, uid, gid, frozenset(names), frozenset(GROUPS[n] for n in names))


@dataclass
class Case:
    """A tree (path -> text, or (text, mode[, uid, gid]); text None: a directory) and the questions to put to sudo."""

    tree: dict
    questions: list[tuple[str, str, str]]
    answers: list[tuple[bool, bool]] = field(default_factory=list)   # (allowed, ran)


def _etc(root: str) -> None:
    with open("/etc/passwd") as fh:
        passwd = [line for line in fh if line.split(":")[0] not in USERS]
    with open("/etc/group") as fh:
        group = [line for line in fh if line.split(":")[0] not in GROUPS]
    with open("/etc/shadow") as fh:
        shadow = [line for line in fh if line.split(":")[0] not in USERS]
    for login, (uid, gid, _) in USERS.items():
        passwd.append(f"{login}:x:{uid}:{gid}::/nonexistent:/bin/sh\n")
        shadow.append(f"{login}:*:19000:0:99999:7:::\n")     # pam_unix wants an entry
    for name, gid in GROUPS.items():
        members = ",".join(u for u, (_, _, extra) in USERS.items() if name in extra)
        group.append(f"{name}:x:{gid}:{members}\n")
    files = {"passwd": passwd, "group": group, "shadow": shadow,
             "hosts": ["127.0.0.1 localhost\n", "10.1.2.3 h1.example.test h1\n"]}
    for name, lines in files.items():
        with open(os.path.join(root, name), "w") as fh:
            fh.writelines(lines)
    os.chmod(os.path.join(root, "shadow"), 0o640)


def _write_tree(base: str, tree: dict) -> None:
    for path, content in tree.items():
        text, mode, uid, gid = (tuple(content) + (0o440, 0, 0)[len(content) - 1:]
                                if isinstance(content, tuple) else (content, 0o440, 0, 0))
        real = os.path.join(base, path.lstrip("/"))
        os.makedirs(os.path.dirname(real), exist_ok=True)
        if text is None:                       # a directory
            os.makedirs(real, exist_ok=True)
            continue
        with open(real, "w") as fh:
            fh.write(text)
        os.chown(real, uid, gid)
        os.chmod(real, mode)


def _script(work: str, cases: list[Case]) -> str:
    q = shlex.quote
    lines = ["set -e"]
    for name in ("passwd", "group", "shadow", "hosts"):
        lines.append(f"mount --bind {q(work)}/etc/{name} /etc/{name}")
    lines += [f"touch {q(work)}/live/sudoers", f"mkdir -p {q(work)}/live/sudoers.d",
              f"mount --bind {q(work)}/live/sudoers /etc/sudoers",
              f"mount --bind {q(work)}/live/sudoers.d /etc/sudoers.d",
              "hostname h1", "ip link add b0 type bridge",
              "ip addr add 10.1.2.3/24 dev b0", "ip link set b0 up", "set +e"]
    for n, case in enumerate(cases):
        src = f"{work}/trees/{n}"
        # same inode for the bind-mounted file; the directory is emptied and refilled
        lines += [f"cat {q(src)}/etc/sudoers > /etc/sudoers 2>/dev/null || : > /etc/sudoers",
                  "chmod 440 /etc/sudoers",
                  "find /etc/sudoers.d -mindepth 1 -delete",
                  f"[ -d {q(src)}/etc/sudoers.d ] && cp -a {q(src)}/etc/sudoers.d/. "
                  "/etc/sudoers.d/"]
        for k, (user, runas, command) in enumerate(case.questions):
            uid, gid, _ = USERS[user]
            argv = shlex.split(command)
            listed = shlex.join(["sudo", "-l", "-U", user, "-u", runas, *argv])
            run = shlex.join(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--init-groups",
                              "sudo", "-n", "-u", runas, *argv])
            lines.append(f"if {listed} >/dev/null 2>&1; then a=1; "
                         f"if {run} >/dev/null 2>&1; then r=1; else r=0; fi; "
                         f"else a=0; r=0; fi; echo \"@ {n} {k} $a $r\"")
    return "\n".join(lines) + "\n"


def ask_sudo(cases: list[Case], work: str) -> list[Case]:
    """Fill every case's ``answers`` from the real sudo (see module doc)."""
    for t in ("sudo", "setpriv", "ip"):
        tool(t)
    os.makedirs(os.path.join(work, "etc"), exist_ok=True)
    os.makedirs(os.path.join(work, "live"), exist_ok=True)
    _etc(os.path.join(work, "etc"))
    for n, case in enumerate(cases):
        _write_tree(os.path.join(work, "trees", str(n)), case.tree)
        case.answers = [(False, False)] * len(case.questions)
    script = os.path.join(work, "ask.sh")
    with open(script, "w") as fh:
        fh.write(_script(work, cases))
    proc = subprocess.run([tool("unshare"), "-m", "-u", "-n", "--propagation", "private",
                           "sh", script], capture_output=True, text=True, timeout=1800)
    seen = 0
    for line in proc.stdout.splitlines():
        if line.startswith("@ "):
            _, n, k, a, r = line.split()
            cases[int(n)].answers[int(k)] = (a == "1", r == "1")
            seen += 1
    if seen != sum(len(c.questions) for c in cases):
        pytest.fail(f"sudo in the namespace answered {seen} questions: {proc.stderr[-2000:]}",
                    pytrace=False)
    return cases


def as_tree(tree: dict) -> dict:
    """A Case's tree as opskit.hosts.sudoers.evaluate takes it (path -> SudoFile)."""
    from opskit.hosts.sudoers.parse import SudoFile
    out = {}
    for path, content in tree.items():
        text, mode, uid, gid = (tuple(content) + (0o440, 0, 0)[len(content) - 1:]
                                if isinstance(content, tuple) else (content, 0o440, 0, 0))
        if text is not None:
            out[path] = SudoFile(text, uid, gid, mode)
    return out


def ours(case: Case, host: HostIdentity = HOST) -> list[tuple[bool, bool]]:
    """opskit's answers to a case's questions: (allowed, runs without a password)."""
    from opskit.hosts.sudoers.evaluate import check
    from opskit.hosts.sudoers.parse import parse_tree
    parsed = parse_tree(as_tree(case.tree), host.hostname)
    out = []
    for user, runas, command in case.questions:
        d = check(parsed, sudo_user(user), host, runas, command)
        out.append((d.allowed, d.allowed and d.nopasswd))
    return out


def disagreements(cases: list[Case]) -> list[tuple[int, int]]:
    """(case, question) where opskit and sudo answer differently."""
    return [(n, k) for n, c in enumerate(cases) for k, (a, b) in
            enumerate(zip(ours(c), c.answers)) if a != b]


def minimal(case: Case, k: int, work: str, rounds: int = 40) -> Case:
    """The smallest tree (lines removed one at a time, each round asking sudo about
    every candidate at once) on which opskit still disagrees about question ``k``."""
    current = Case(dict(case.tree), [case.questions[k]])
    for r in range(rounds):
        candidates = []
        for path, content in current.tree.items():
            text = content[0] if isinstance(content, tuple) else content
            if text is None:
                continue
            lines = text.splitlines()
            for i in range(len(lines)):
                smaller = "\n".join(lines[:i] + lines[i + 1:]) + "\n"
                tree = dict(current.tree)
                tree[path] = (smaller,) + tuple(content[1:]) if isinstance(content, tuple) \
                    else smaller
                candidates.append(Case(tree, list(current.questions)))
        if not candidates:
            break
        ask_sudo(candidates, os.path.join(work, f"min{r}"))
        still = [c for c in candidates if ours(c) != c.answers]
        if not still:
            break
        current = still[0]
    return current


def show(case: Case) -> str:
    """A case as text: its files and its questions with both answers."""
    out = []
    for path, content in sorted(case.tree.items()):
        text = content[0] if isinstance(content, tuple) else content
        out.append(f"=== {path}\n{text if text is not None else '(directory)'}")
    for q, a, b in zip(case.questions, ours(case), case.answers or [None] * 99):
        out.append(f"? {q}: opskit (allowed, no password) = {a}, sudo = {b}")
    return "\n".join(out)


def view(case: Case, user: str, host: HostIdentity = HOST) -> list:
    """opskit's permission view of ``user`` on a case's tree: the SudoRights evaluate() gives."""
    from opskit.hosts.sudoers.evaluate import evaluate
    from opskit.hosts.sudoers.parse import parse_tree
    return evaluate(parse_tree(as_tree(case.tree), host.hostname), sudo_user(user), host)


def view_answers(case: Case, host: HostIdentity = HOST) -> list[tuple[bool, bool]]:
    """What the permission view claims for each question: (some item covers it, some
    covering item asks no password). Items are matched by their text (run-as and command
    as shown), negations ignored: the view may over-report, it must not under-report."""
    from opskit.hosts.sudoers.evaluate import Matcher
    from opskit.hosts.sudoers.parse import ParsedTree, parse_userspec
    out = []
    rights = {u: view(case, u, host) for u in {q[0] for q in case.questions}}
    for user, runas, command in case.questions:
        m = Matcher(ParsedTree(), sudo_user(user), host)
        covered = free = False
        for r in rights[user]:
            if r.negated:
                continue
            cs = parse_userspec(f"{user} ALL = ({r.runas}) {r.command}", r.source) \
                .sections[0][1][0]
            if m.runas_matches(cs, runas) and m.command_matches(cs.command, command):
                covered = True
                free = free or r.nopasswd
        out.append((covered, free))
    return out


def view_misses(cases: list[Case]) -> list[tuple[int, int]]:
    """(case, question) where sudo allows more than the view shows: a command allowed
    that no item covers, or run without a password while every covering item says one
    is asked (a false pass for a compliance check)."""
    return [(n, k) for n, c in enumerate(cases)
            for k, ((v_allowed, v_free), (allowed, ran)) in
            enumerate(zip(view_answers(c), c.answers))
            if (allowed and not v_allowed) or (ran and not v_free)]
