"""What else a departing person can still use on a host, beyond their account (R-ACC-6).

Shell probes (run in the freeze's one round trip) and their parsers for:

* processes by real, effective, saved and filesystem uid (``/proc/PID/status``
  ``Uid:``) and by login uid (``/proc/PID/loginuid``: a root process started
  through sudo from their session keeps it);
* cron beyond their own crontab: ``/etc/crontab``, ``/etc/cron.d/*``,
  ``/etc/anacrontab`` lines that run as them (user field = login or uid) or
  run something from their home, and files there owned by them;
* systemd: ``/var/lib/systemd/linger/LOGIN``, units under their
  ``~/.config/systemd/user`` (user timers), system units with ``User=`` them;
* setuid/setgid files owned by them, or changed since their tenure began in
  /tmp, /var/tmp, /dev/shm or /home (never legitimate there);
* the *tenure report*: files under /etc, /root, /usr/local, /var/spool
  (and ``accounts.tenure_paths``) changed (ctime) since the tenure began --
  a human reviews them; those in places that run code as root (cron, systemd,
  sudoers, root's ssh and shell start-up files, PAM, ld.so.preload, setuid
  files anywhere) block a ``complete`` certificate when the person held sudo
  rights, until the operator names them reviewed (``--reviewed PATH``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .target import q

_MARK = "@@opskit-"
TEMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/home")
TENURE_DIRS = ("/etc", "/root", "/usr/local", "/var/spool")
TENURE_LIMIT = 500
# places whose files run code as root (or let someone log in as root)
ROOT_EXEC = ("/etc/cron", "/etc/crontab", "/etc/anacrontab", "/var/spool/cron", "/etc/systemd/",
             "/etc/sudoers", "/root/.ssh/", "/root/.bashrc", "/root/.profile", "/etc/profile",
             "/etc/bash.bashrc", "/etc/rc.local", "/etc/ld.so.preload", "/etc/pam.d/",
             "/etc/ssh/", "/etc/init.d/", "/etc/update-motd.d/", "/usr/local/bin/",
             "/usr/local/sbin/", "/etc/environment", "/etc/security/")
CRON_FILES = ("/etc/crontab", "/etc/anacrontab")
CRON_DIR = "/etc/cron.d"
SETUID_DIRS = (*TEMP_DIRS, "/root", "/usr/local", "/opt", "/srv", "/var/lib", "/usr/bin",
               "/usr/sbin", "/bin", "/sbin")
UNIT_DIRS = ("/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system")


def processes_script() -> str:
    """sh: one line per process 'p PID STATE NAME ruid euid suid fsuid', then
    'l PID LOGINUID' lines, then 's PID SUDO_UID' for processes whose environment
    sudo marked (a root process started through sudo keeps SUDO_UID=the caller's uid;
    the only tie to them where no login uid is recorded)."""
    return ("awk 'FNR==1{pid=FILENAME; sub(/^\\/proc\\//,\"\",pid); sub(/\\/status$/,\"\",pid); "
            "n=\"\"; st=\"\"} /^Name:/{n=$2} /^State:/{st=$2} "
            "/^Uid:/{print \"p\", pid, st, n, $2, $3, $4, $5}' /proc/[0-9]*/status 2>/dev/null; "
            "grep -H . /proc/[0-9]*/loginuid 2>/dev/null | "
            "awk -F: '{p=$1; sub(/^\\/proc\\//,\"\",p); sub(/\\/loginuid$/,\"\",p); "
            "print \"l\", p, $2}'; "
            "grep -Haz '^SUDO_UID=' /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | "
            "awk -F: '{p=$1; sub(/^\\/proc\\//,\"\",p); sub(/\\/environ$/,\"\",p); "
            "sub(/^SUDO_UID=/,\"\",$2); print \"s\", p, $2}'; true")


def kill_lines(uid: int, rounds: int = 5) -> list[str]:
    """sh lines ending every process with ``uid`` as real, effective, saved, fs or
    login uid, or started through sudo by ``uid`` (SUDO_UID in its environment; rounds
    catch forks); never the shell running them."""
    u = int(uid)
    return [f"for r in $(seq {rounds}); do "
            f"pids=$( (awk -v u={u} '/^State:/{{st=$2}} /^Uid:/{{if (st!=\"Z\" && ($2==u || "
            f"$3==u || $4==u || $5==u)) {{p=FILENAME; sub(/^\\/proc\\//,\"\",p); "
            f"sub(/\\/status$/,\"\",p); print p}}}}' /proc/[0-9]*/status 2>/dev/null; "
            f"grep -lx {u} /proc/[0-9]*/loginuid 2>/dev/null | cut -d/ -f3; "
            f"grep -lazx SUDO_UID={u} /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3) | sort -u | "
            "grep -vx \"$$\" || true); "
            "[ -n \"$pids\" ] || break; kill -KILL $pids 2>/dev/null || true; sleep 0.2; done"]


def kill_group_lines(uid: int, gids: list[int], rounds: int = 5) -> list[str]:
    """sh lines ending every process with ``uid`` as real, effective, saved or fs uid that
    still holds one of ``gids`` (supplementary or as a gid): credentials of groups a
    transfer removed, which a running process keeps until it ends (R-ACC-6)."""
    u, gs = int(uid), " " + " ".join(str(int(g)) for g in gids) + " "
    return [f"for r in $(seq {rounds}); do "
            f"pids=$(awk -v u={u} -v gs=\"{gs}\" 'FNR==1{{st=\"\"; own=0; hit=0}} "
            "/^State:/{st=$2} /^Uid:/{own=($2==u || $3==u || $4==u || $5==u)} "
            "/^Gid:/{for (i=2; i<=5; i++) if (index(gs, \" \" $i \" \")) hit=1} "
            "/^Groups:/{for (i=2; i<=NF; i++) if (index(gs, \" \" $i \" \")) hit=1; "
            "if (st!=\"Z\" && own && hit) {p=FILENAME; sub(/^\\/proc\\//,\"\",p); "
            "sub(/\\/status$/,\"\",p); print p}}' /proc/[0-9]*/status 2>/dev/null | "
            "grep -vx \"$$\" || true); "
            "[ -n \"$pids\" ] || break; kill -KILL $pids 2>/dev/null || true; sleep 0.2; done"]


@dataclass
class Proc:
    pid: int
    name: str
    uids: tuple            # real, effective, saved, fs
    loginuid: int | None = None
    sudo_uid: int | None = None     # SUDO_UID in its environment: started through sudo by

    def describe(self) -> str:
        r, e, s, f = self.uids
        login = "" if self.loginuid is None else f" loginuid={self.loginuid}"
        sudo = "" if self.sudo_uid is None else f" sudo_uid={self.sudo_uid}"
        return f"{self.pid} {self.name} (uid r={r} e={e} s={s} fs={f}{login}{sudo})"


def parse_processes(text: str, uid: int) -> list[Proc]:
    """Live (non-zombie) processes holding ``uid`` in any uid slot or as login uid, or
    started through sudo by ``uid`` (R-ACC-6)."""
    procs: dict[int, Proc] = {}
    zombies, logins, sudos = set(), {}, {}
    for line in text.splitlines():
        parts = line.split()
        if parts[:1] == ["p"] and len(parts) == 8 and parts[1].isdigit():
            pid = int(parts[1])
            if parts[2] == "Z":
                zombies.add(pid)
                continue
            procs[pid] = Proc(pid, parts[3], tuple(int(x) for x in parts[4:8]))
        elif parts[:1] == ["l"] and len(parts) == 3 and parts[1].isdigit():
            logins[int(parts[1])] = int(parts[2])
        elif parts[:1] == ["s"] and len(parts) == 3 and parts[1].isdigit() \
                and parts[2].isdigit():
            sudos[int(parts[1])] = int(parts[2])
    out = []
    for pid, p in sorted(procs.items()):
        p.loginuid = logins.get(pid) if logins.get(pid) != 4294967295 else None
        p.sudo_uid = sudos.get(pid)
        if uid in p.uids or p.loginuid == uid or p.sudo_uid == uid:
            out.append(p)
    return out


def cron_script(root: str) -> str:
    """sh: system cron files with owner uid, then their content."""
    files = " ".join(q(root + f) for f in CRON_FILES) + f" {q(root + CRON_DIR)}/*"
    return (f"for f in {files}; do [ -f \"$f\" ] || continue; "
            f"printf '{_MARK}cron %s %s\\n' \"$(stat -c %u \"$f\")\" \"$f\"; cat \"$f\"; echo; done")


@dataclass
class CronHit:
    file: str
    line_no: int
    line: str
    why: str


def parse_cron(text: str, root: str, login: str, uid: int, home: str
               ) -> tuple[list[CronHit], list[str], dict[str, str]]:
    """(lines running as the person or from their home, files owned by them,
    file texts) in system cron files."""
    hits, owned, texts = [], [], {}
    current = None
    lines: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith(_MARK + "cron "):
            owner, _, real = line[len(_MARK) + 5:].partition(" ")
            current = real[len(root):] if root and real.startswith(root) else real
            lines[current] = []
            if owner == str(uid):
                owned.append(current)
        elif current is not None:
            lines[current].append(line)
    for path, body in lines.items():
        texts[path] = "\n".join(body)
        user_field = 4 if path == "/etc/anacrontab" else 5
        for i, raw in enumerate(body, 1):
            why = _cron_line_why(raw, user_field, login, uid, home, path)
            if why:
                hits.append(CronHit(path, i, raw, why))
    return hits, owned, texts


def _cron_line_why(raw: str, user_field: int, login: str, uid: int, home: str,
                   path: str) -> str | None:
    line = raw.strip()
    if not line or line.startswith("#") or re.match(r"^[A-Za-z_][A-Za-z0-9_]*\s*=", line):
        return None
    fields = line.split()
    if line.startswith("@"):                    # @reboot user command
        user_field = 1
    if path != "/etc/anacrontab" and len(fields) > user_field and \
            fields[user_field] in (login, str(uid)):
        return f"runs as {login}"
    if home and home != "/" and re.search(rf"{re.escape(home.rstrip('/'))}(/|\s|$)", line):
        return f"runs something from {home}"
    return None


def systemd_script(root: str, login: str) -> str:
    """sh (needs $uid, $home): linger file, the person's user units, system units
    running as them."""
    units = " ".join(f"{q(root + d)}/*.service {q(root + d)}/*/*.service" for d in UNIT_DIRS)
    return (f"[ -e {q(root + '/var/lib/systemd/linger/' + login)} ] && "
            f"echo '{_MARK}linger'; "
            f"d={q(root)}\"${{home%/}}/.config/systemd/user\"; "
            f"[ -d \"$d\" ] && [ ! -L \"$d\" ] && find \"$d\" \\( -type f -o -type l \\) "
            f"-printf '{_MARK}userunit %P\\n' 2>/dev/null; "
            f"grep -lE \"^[[:space:]]*User=({re.escape(login)}|$uid)[[:space:]]*\\$\" "
            f"{units} 2>/dev/null | sed 's|^|{_MARK}sysunit |'; true")


@dataclass
class Systemd:
    linger: bool = False
    user_units: list[str] = field(default_factory=list)
    system_units: list[str] = field(default_factory=list)


def parse_systemd(text: str, root: str) -> Systemd:
    out = Systemd()
    for line in text.splitlines():
        if line == _MARK + "linger":
            out.linger = True
        elif line.startswith(_MARK + "userunit "):
            out.user_units.append(line.split(" ", 1)[1])
        elif line.startswith(_MARK + "sysunit "):
            path = line.split(" ", 1)[1]
            out.system_units.append(path[len(root):] if root and path.startswith(root) else path)
    return out


def setuid_script(root: str) -> str:
    """sh (needs $uid, $since): setuid/setgid files owned by the person or changed
    since $since, with owner -- in SETUID_DIRS (a scan of all of / takes minutes)."""
    where = " ".join(q(root + d) for d in SETUID_DIRS) if not root else q(root)
    return (f"find {where} -xdev -type f -perm /6000 \\( -uid \"$uid\" -o -newerct "
            f"\"@$since\" \\) -printf '%U %m %p\\n' 2>/dev/null | sort -u -k3; true")


@dataclass
class SetuidFile:
    path: str
    owner: int
    mode: str
    why: str            # owned | planted | review


def parse_setuid(text: str, root: str, uid: int, home: str) -> list[SetuidFile]:
    out = []
    for line in text.splitlines():
        owner, mode, real = (line.split(" ", 2) + ["", ""])[:3]
        if not real or not owner.isdigit():
            continue
        path = real[len(root):] if root and real.startswith(root) else real
        if int(owner) == uid:
            why = "owned"
        elif any(path.startswith(d + "/") for d in TEMP_DIRS) or \
                (home and home != "/" and path.startswith(home.rstrip("/") + "/")):
            why = "planted"
        else:
            why = "review"
        out.append(SetuidFile(path, int(owner), mode, why))
    return out


def tenure_script(root: str, extra: tuple = ()) -> str:
    """sh: files under the tenure paths changed (ctime) since $since."""
    dirs = " ".join(q(root + d) for d in (*TENURE_DIRS, *extra))
    return (f"find {dirs} -xdev \\( -type f -o -type l \\) -newerct \"@$since\" "
            f"-printf '%C@ %p\\n' 2>/dev/null | sort -n | head -n {TENURE_LIMIT}; true")


def parse_tenure(text: str, root: str, ignore: tuple = ()) -> list[str]:
    out = []
    for line in text.splitlines():
        _, _, real = line.partition(" ")
        if not real:
            continue
        path = real[len(root):] if root and real.startswith(root) else real
        if not path.startswith(ignore) or not ignore:
            out.append(path)
    return out


def runs_as_root(path: str) -> bool:
    """Whether a file at ``path`` is read by something running as root (tenure review)."""
    return path.startswith(ROOT_EXEC)


def since_script(root: str, since: int | None) -> str:
    """sh setting $since: the given epoch, else the home directory's oldest of
    mtime and ctime (the best guess at when the tenure began)."""
    if since is not None:
        return f"since={int(since)}; echo $since"
    return (f"since=$(stat -c '%Y %Z' {q(root)}\"$home\" 2>/dev/null | awk '{{print ($1<$2)?$1:$2}}'); "
            "[ -n \"$since\" ] || since=0; echo $since")
