"""Facts the MLPS checks share, read through the Probe (so the same code runs
locally, over SSH and on a recorded host tree) and parsed once per host."""
from __future__ import annotations

import fnmatch
import stat as _stat
import time

from ..probe import Probe
from . import parse as M

SSHD = "/usr/sbin/sshd"
SSHD_T = ["sh", "-c", "[ -x /usr/sbin/sshd ] || exit 127; /usr/sbin/sshd -T 2>&1"]
DAY = 86400.0


def glob(probe: Probe, pattern: str) -> list[str]:
    """Paths matching ``pattern``, wildcards in any component (as glob(3),
    which sshd's Include uses: a wildcard never matches a leading dot).
    Only directories that a wildcard or the last name is looked up in are
    listed (each listing is cached: one round trip serves every name)."""
    parts = [p for p in pattern.split("/") if p]
    paths = ["/" if pattern.startswith("/") else ""]
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if any(c in part for c in "*?["):
            paths = [_join(d, n) for d in paths for n in sorted(probe.listdir(d or "/") or [])
                     if fnmatch.fnmatchcase(n, part) and not n.startswith(".")]
        elif last:
            paths = [_join(d, part) for d in paths if part in (probe.listdir(d or "/") or [])]
        else:
            paths = [_join(d, part) for d in paths]
    return sorted(paths)


def _join(directory: str, name: str) -> str:
    return f"{directory.rstrip('/')}/{name}" if directory else name


# --- sshd ---------------------------------------------------------------------------------------

def sshd_installed(probe: Probe) -> bool:
    return probe.memo("sshd-installed", lambda: bool(glob(probe, "/etc/ssh/sshd_config")
                                                     or glob(probe, SSHD)))


def sshd_files(probe: Probe) -> M.SshdConfig:
    """sshd_config with its Includes and Match blocks, from the files."""
    return probe.memo("sshd-files", lambda: M.parse_sshd_config(
        probe.read, lambda p: glob(probe, p)))


def sshd_effective(probe: Probe) -> M.SshdConfig:
    """The effective global settings: ``sshd -T`` where the host can run it
    (needs root and host keys), else the files parsed as sshd reads them;
    the Match blocks always from the files."""
    def compute():
        text, source = probe.command("sshd-T", SSHD_T)
        if text and "permitrootlogin" in text:
            config = M.parse_sshd_t(text, "/usr/sbin/sshd -T")
            # plain sshd -T applies no Match block: the checks weigh them from the files
            config.matches = sshd_files(probe).matches
            return config
        config = sshd_files(probe)
        if not probe.recorded:
            config.source += f" (sshd -T unavailable: {source if text is None else text.strip()[:80]})"
        return config
    return probe.memo("sshd-effective", compute)


# --- PAM -------------------------------------------------------------------------------------------

def pam(probe: Probe, service: str, types=M.PAM_TYPES) -> tuple[list[M.PamEntry], list[str]]:
    return probe.memo(f"pam-{service}-{','.join(types)}",
                      lambda: M.pam_stack(probe.read, service, tuple(types)))


def conf_dir_settings(probe: Probe, main: str, drop_dir: str | None,
                      sep: str = "=") -> dict[str, tuple[str, str]]:
    """key -> (value, 'file:line: text') from ``main`` then ``drop_dir/*.conf``
    in name order (later wins)."""
    out = {}
    paths = [main] + (glob(probe, f"{drop_dir}/*.conf") if drop_dir else [])
    for path in paths:
        text = probe.read(path)
        if text is None:
            continue
        for key, (value, line) in M.key_values(text, path, sep).items():
            out[key] = (value, f"{line.where()}: {line.text}")
    return out


def login_defs(probe: Probe) -> dict[str, tuple[str, str]]:
    return probe.memo("login.defs", lambda: conf_dir_settings(probe, "/etc/login.defs", None,
                                                               sep=" "))


# --- accounts --------------------------------------------------------------------------------------

def passwd(probe: Probe) -> list[M.Account]:
    return probe.memo("passwd", lambda: M.parse_passwd(probe.read("/etc/passwd") or ""))


def shadow(probe: Probe) -> list[M.Shadow] | None:
    text = probe.read("/etc/shadow")
    return None if text is None else probe.memo("shadow", lambda: M.parse_shadow(text))


def groups(probe: Probe) -> dict:
    return probe.memo("group", lambda: M.parse_group(probe.read("/etc/group") or ""))


def members(probe: Probe, group: str) -> set[str]:
    """Users in ``group``: listed members plus users whose primary group it is."""
    entry = groups(probe).get(group)
    if entry is None:
        return set()
    gid, listed, _ = entry
    return set(listed) | {a.name for a in passwd(probe) if a.gid == gid}


# --- packages and services -------------------------------------------------------------------------

def packages(probe: Probe) -> dict[str, str] | None:
    """Installed Debian packages -> version, None without a dpkg database."""
    text = probe.read("/var/lib/dpkg/status")
    return None if text is None else probe.memo("dpkg", lambda: M.parse_dpkg_status(text))


UNIT_DIRS_ETC = ("/etc/systemd/system", "/run/systemd/system")
UNIT_DIRS_LIB = ("/usr/lib/systemd/system", "/lib/systemd/system")


def _in_dir(probe: Probe, directory: str, name: str) -> bool:
    """``name`` is an entry of ``directory`` (from the cached listing)."""
    return name in (probe.listdir(directory) or [])


def unit_state(probe: Probe, unit: str) -> tuple[str, str]:
    """('enabled'|'masked'|'disabled'|'not-found', evidence), as ``systemctl
    is-enabled`` decides from the unit links: a link to /dev/null in /etc or
    /run masks it; a link in a *.wants or *.requires directory under /etc
    (or /run) enables it; otherwise it is disabled (or not installed).
    Directory listings are cached, so many units cost a few round trips."""
    for directory in UNIT_DIRS_ETC:
        path = f"{directory}/{unit}"
        # a link to /dev/null (or an empty file) masks; in a recorded tree the
        # link leaves the tree and reads as empty
        if _in_dir(probe, directory, unit) and (
                probe.realpath(path) == "/dev/null" or probe.read(path) == ""):
            return "masked", f"{path} -> /dev/null"
    for directory in UNIT_DIRS_ETC:
        for entry in probe.listdir(directory) or []:
            if entry.endswith((".wants", ".requires")) and _in_dir(
                    probe, f"{directory}/{entry}", unit):
                return "enabled", f"{directory}/{entry}/{unit}"
    names = [unit]
    if "@" in unit:
        names.append(unit.split("@", 1)[0] + "@." + unit.rsplit(".", 1)[-1])
    installed = any(_in_dir(probe, d, n) for d in UNIT_DIRS_ETC + UNIT_DIRS_LIB for n in names)
    return ("disabled" if installed else "not-found"), f"no link to {unit} in " \
        f"{', '.join(d + '/*.wants' for d in UNIT_DIRS_ETC)}"


def running(probe: Probe, names) -> list[tuple[int, str]]:
    """Running processes whose command name is in ``names`` (live hosts)."""
    names = set(names)
    return sorted((pid, comm) for pid, comm in probe.processes().items() if comm in names)


# --- files ---------------------------------------------------------------------------------------------

def mode_finding(probe: Probe, path: str, max_mode: int, owners=("root",),
                 uid_names: dict | None = None) -> tuple[str | None, str]:
    """(problem or None, evidence) for a file that must be no more open than
    ``max_mode`` and owned by root."""
    st = probe.stat(path)
    if st is None:
        return None, f"{path} absent"
    mode = _stat.S_IMODE(st.mode)
    names = uid_names or {0: "root"}
    owner = names.get(st.uid, str(st.uid))
    shown = f"{path} mode {mode:04o} owner {owner}"
    extra = mode & ~max_mode
    if extra:
        return f"{path} is mode {mode:04o}, more open than {max_mode:04o}", shown
    if owner not in owners:
        return f"{path} is owned by {owner}, not {'/'.join(owners)}", shown
    return None, shown


def age_days(mtime: float) -> float:
    return max(0.0, (time.time() - mtime) / DAY)


def sysctl_runtime(probe: Probe, key: str) -> str | None:
    return probe.value("/proc/sys/" + key.replace(".", "/"))
