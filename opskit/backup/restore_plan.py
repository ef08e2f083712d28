"""What a restore would do to its target, before it does it (issue #22 item 3).

Restoring into an empty directory only creates files. Restoring over a live
tree (``--target /``) replaces what is there, so the CLI shows this plan
(``--dry-run``), asks before replacing anything (or needs ``--overwrite``
without a terminal), and never replaces an account database, sudoers or PAM
file unless it is named with ``--include`` (R-ACC-1: accounts change through
``opskit users``, not as a side effect of a restore).
"""
from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field

from .repository import Repository
from .tree import TYPE_DIR, TYPE_FILE, TYPE_SYMLINK, safe_name

# replaced only when named exactly with --include
PROTECTED = ("/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow", "/etc/subuid",
             "/etc/subgid", "/etc/sudoers", "/etc/sudoers.d/*", "/etc/pam.d/*",
             "/etc/ssh/sshd_config", "/etc/ssh/sshd_config.d/*", "/etc/security/*",
             "*/.ssh/authorized_keys*", "/etc/crontab", "/etc/cron.d/*")


def protected(path: str) -> bool:
    """True for files whose silent replacement would change who can log in or act as root."""
    # also inside a backed-up root (a container or chroot tree): */etc/passwd
    return any(fnmatch.fnmatchcase(path, "*" + pattern.lstrip("*")) for pattern in PROTECTED)


@dataclass
class RestorePlan:
    """Snapshot paths by what restoring them would do to the target."""

    create: list[str] = field(default_factory=list)
    replace: list[str] = field(default_factory=list)      # exists and differs
    unchanged: list[str] = field(default_factory=list)    # same type, size, mode and mtime
    held: list[str] = field(default_factory=list)         # protected: would replace, not named

    def excluded(self) -> set[bytes]:
        """Snapshot paths the restorer must skip (the held protected files)."""
        return {os.fsencode(p) for p in self.held}


def _same(node: dict, st: os.stat_result) -> bool:
    import stat as statmod
    kind = node.get("type")
    if kind == TYPE_FILE and not statmod.S_ISREG(st.st_mode):
        return False
    if kind == TYPE_SYMLINK and not statmod.S_ISLNK(st.st_mode):
        return False
    if kind == TYPE_FILE and int(node.get("size") or 0) != st.st_size:
        return False
    if node.get("mode") is not None and (node["mode"] & 0o7777) != (st.st_mode & 0o7777):
        return False
    mtime = node.get("mtime_ns")
    return mtime is None or kind != TYPE_FILE or int(mtime) == st.st_mtime_ns


def plan_restore(repo: Repository, snap: dict, target: str, includes: list[str]) -> RestorePlan:
    """Compare the selected entries of ``snap`` with what exists under ``target``."""
    plan = RestorePlan()
    wanted = ["/" + p.strip("/") for p in includes]
    named = set(wanted)
    root = os.path.abspath(target)

    def chosen(path: str) -> bool:
        return not wanted or any(path == w or path.startswith(w.rstrip("/") + "/") for w in wanted)

    def leads(path: str) -> bool:
        return any(w.startswith(path.rstrip("/") + "/") for w in wanted)

    def walk(tree_id: bytes, base: str) -> None:
        for node in repo.load_tree(tree_id).get("nodes", []):
            path = base.rstrip("/") + "/" + os.fsdecode(safe_name(node))
            if node.get("type") == TYPE_DIR:
                if chosen(path) or leads(path):
                    walk(bytes.fromhex(node["subtree"]), path)
                continue
            if chosen(path):
                _sort(plan, node, path, os.path.join(root, path.lstrip("/")), path in named)

    walk(bytes.fromhex(snap["tree"]), "/")
    return plan


def _sort(plan: RestorePlan, node: dict, path: str, dest: str, named: bool) -> None:
    try:
        st = os.lstat(dest)
    except FileNotFoundError:
        plan.create.append(path)
        return
    except OSError:
        plan.replace.append(path)
        return
    if _same(node, st):
        plan.unchanged.append(path)
    elif protected(path) and not named:
        plan.held.append(path)
    else:
        plan.replace.append(path)
