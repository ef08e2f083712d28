"""Pure parsers for the files and command outputs the checks read.

No I/O here: every function takes text and returns plain data, so each rule
(comment handling, ``-``/``_`` in module names, later-file-wins) is unit
tested on its own.
"""
from __future__ import annotations

import fnmatch
import ipaddress
import json
import os
import re
import socket
import struct
from dataclasses import dataclass, field

# --- shared ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """A logical config line: its file, the 1-based number of its first physical
    line, and the text with comments and continuations resolved."""

    file: str
    number: int
    text: str

    def where(self) -> str:
        return f"{self.file}:{self.number}"


def logical_lines(text: str, file: str, comment_chars: str = "#", *,
                  continuation: bool = True) -> list[Line]:
    """Non-empty, non-comment lines; a trailing backslash joins the next line
    (unless ``continuation`` is False: systemd-sysctl has no continuations)."""
    out: list[Line] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped[0] in comment_chars):
            continue
        if not pending:
            start = number
        if continuation and stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        if full:
            out.append(Line(file, start, full))
    if pending.strip():
        out.append(Line(file, start, pending.strip()))
    return out


def config_files_in_order(listing: dict[str, list[str]],
                          suffix: str | tuple[str, ...] = ".conf") -> list[tuple[str, str]]:
    """systemd/kmod drop-in order: ``listing`` maps directory -> file names, in
    precedence order (first directory wins for a file name); the result is
    (directory, name) sorted by file name, each name once. Hidden files
    ('.name.conf') are skipped, as both systemd and kmod do."""
    chosen: dict[str, str] = {}
    for directory, names in listing.items():
        for name in names:
            if name.endswith(suffix) and not name.startswith(".") and name not in chosen:
                chosen[name] = directory
    return [(chosen[name], name) for name in sorted(chosen)]


# --- modprobe.d ----------------------------------------------------------------------------

MODPROBE_DIRS = ("/etc/modprobe.d", "/run/modprobe.d", "/usr/local/lib/modprobe.d",
                 "/usr/lib/modprobe.d", "/lib/modprobe.d")
# kmod 30 reads *.conf and *.alias files (libkmod-config.c conf_files_filter_out)
MODPROBE_SUFFIXES = (".conf", ".alias")
# an install command that exits without loading anything
DISABLING_COMMANDS = ("/bin/false", "/bin/true", "/usr/bin/false", "/usr/bin/true", "false",
                      "true")


def module_name(name: str) -> str:
    """Kernel module names treat '-' and '_' alike (usb-storage == usb_storage)."""
    return name.strip().replace("-", "_")


@dataclass
class ModprobeRule:
    module: str          # normalised (underscores)
    kind: str            # 'install' or 'blacklist'
    command: str         # install command ('' for blacklist)
    line: Line

    @property
    def disables(self) -> bool:
        """An install command that loads nothing: one simple command, /bin/false
        or /bin/true. kmod hands the command to /bin/sh (system(3)), so
        '/bin/false || modprobe --ignore-install usb-storage' loads the module;
        any shell control character (``;&|`$()<>``, including kmod's own
        $CMDLINE_OPTS, which options lines fill in) means it may load. A
        blacklist does not disable: kmod only skips the module when it is
        reached through an alias, and 'modprobe usb-storage' still loads it
        (issue #18 item 3)."""
        if self.kind != "install":
            return False
        argv = self.command.split()
        return bool(argv) and argv[0] in DISABLING_COMMANDS and \
            not any(c in SHELL_CONTROL for c in self.command)


# characters that let /bin/sh run more than the first command of an install line
SHELL_CONTROL = frozenset(";&|`$()<>\n")


def kmod_lines(text: str, file: str) -> list[Line]:
    """Lines as kmod 30 reads a modprobe.d file (libkmod-util.c getline_wrapped,
    libkmod-config.c kmod_config_parse): a backslash before a newline joins
    the next physical line with nothing in between, on a comment line too
    ('# note \\' swallows the line after it); a backslash before any other
    character is dropped and the character kept (so '\\ ' at the end of a
    line does not continue it); a line that is empty or whose first
    character is '#' is skipped."""
    out: list[Line] = []
    buf: list[str] = []
    number = start = 1
    i = 0
    while i <= len(text):
        ch = text[i] if i < len(text) else None
        if ch is None or ch == "\n":
            line = "".join(buf)
            if line and line[0] != "#" and line.strip(" \t"):
                out.append(Line(file, start, line.strip(" \t")))
            if ch is None:
                break
            buf, number, i = [], number + 1, i + 1
            start = number
            continue
        if ch == "\\":
            nxt = text[i + 1] if i + 1 < len(text) else None
            if nxt == "\n":
                number += 1
            elif nxt is not None:
                buf.append(nxt)
            i += 2
            continue
        buf.append(ch)
        i += 1
    return out


def parse_modprobe(text: str, file: str) -> list[ModprobeRule]:
    """``install`` and ``blacklist`` directives of one modprobe.d file, words
    split on spaces and tabs as kmod does."""
    rules = []
    for line in kmod_lines(text, file):
        words = [w for w in re.split(r"[ \t]+", line.text) if w]
        if len(words) >= 2 and words[0] == "blacklist":
            rules.append(ModprobeRule(module_name(words[1]), "blacklist", "", line))
        elif len(words) >= 3 and words[0] == "install":     # kmod skips a bare 'install M'
            rules.append(ModprobeRule(module_name(words[1]), "install", " ".join(words[2:]), line))
    return rules


def effective_install(rules: list[ModprobeRule], module: str) -> ModprobeRule | None:
    """The ``install`` command kmod uses for ``module``: the first one read wins."""
    module = module_name(module)
    for rule in rules:
        if rule.kind == "install" and rule.module == module:
            return rule
    return None


def parse_proc_modules(text: str) -> dict[str, str]:
    """/proc/modules: normalised module name -> its line."""
    out = {}
    for raw in text.splitlines():
        words = raw.split()
        if words:
            out[module_name(words[0])] = raw.strip()
    return out


def parse_builtin_modules(text: str) -> set[str]:
    """modules.builtin: 'kernel/drivers/usb/storage/usb-storage.ko' lines."""
    out = set()
    for raw in text.splitlines():
        base = os.path.basename(raw.strip())
        if base.endswith(".ko"):
            out.add(module_name(base[:-3]))
    return out


def cmdline_blacklist(cmdline: str) -> dict[str, str]:
    """Modules the kernel refuses to load (``module_blacklist=`` on its command
    line): module name, exactly as written -> the parameter. As the kernel
    reads it (kernel/module/main.c blacklisted(), core_param charp; params.c
    parse_args): the names are compared byte for byte with the module's own
    name, which has underscores, so 'module_blacklist=usb-storage' blocks
    nothing; a later module_blacklist= replaces an earlier one; the parameter
    name may be spelt module-blacklist; quotes are dropped; words after '--'
    go to init, not to the kernel. ``modprobe.blacklist=`` is only kmod's
    alias blacklist and does not count."""
    last = None
    for word in cmdline.split():
        if word == "--":
            break
        key, _, value = word.replace('"', "").partition("=")
        if key.replace("-", "_") == "module_blacklist":
            last = word, value
    if last is None:
        return {}
    return {mod: last[0] for mod in last[1].split(",") if mod}


# --- sysctl.d --------------------------------------------------------------------------------

SYSCTL_DIRS = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d",
               "/lib/sysctl.d")


@dataclass
class SysctlSetting:
    key: str             # dotted, as systemd-sysctl normalises it (may contain * globs)
    value: str
    line: Line
    ignore_failure: bool = False     # written '-key = value'

    @property
    def is_glob(self) -> bool:
        return any(c in self.key for c in "*?[")


def sysctl_key(key: str) -> str:
    """systemd-sysctl's normalisation: when the first separator is '/', every
    '/' becomes '.' and every '.' becomes '/' ('net/ipv4/conf/eth0.100/forwarding'
    is 'net.ipv4.conf.eth0/100.forwarding'); a leading '-' is not part of it."""
    key = key.strip().lstrip("-").strip().lstrip("/")
    cut = next((i for i, c in enumerate(key) if c in "./"), None)
    if cut is None or key[cut] == ".":
        return key
    return key[:cut] + key[cut:].translate(str.maketrans("./", "/."))


def parse_sysctl(text: str, file: str) -> list[SysctlSetting]:
    """Assignments of one sysctl.d file ('#' and ';' comments, no continuations)."""
    out = []
    for line in logical_lines(text, file, comment_chars="#;", continuation=False):
        key, eq, value = line.text.partition("=")
        if eq and key.strip().lstrip("-").strip():
            out.append(SysctlSetting(sysctl_key(key), value.strip(), line,
                                     key.strip().startswith("-")))
    return out


def sysctl_glob_match(pattern: str, key: str) -> bool:
    """Whether a glob key names ``key`` as systemd-sysctl finds it: glob(3) on
    /proc/sys/<path>, so a '*', '?' or '[..]' never matches across a path
    separator ('.' in the dotted form): 'net.ipv4.*.forwarding' does not name
    net.ipv4.conf.all.forwarding."""
    want, have = pattern.split("."), key.split(".")
    return len(want) == len(have) and \
        all(fnmatch.fnmatchcase(h, w) for w, h in zip(want, have))


def sysctl_applied(settings: list[SysctlSetting]) -> list[SysctlSetting]:
    """systemd-sysctl's table of assignments, in the order it applies them
    (systemd 252 sysctl.c parse_file): one entry per key; a new value for a
    key removes the old entry and appends the new one, while the same value
    again keeps the old entry where it was."""
    table: dict[str, SysctlSetting] = {}
    for setting in settings:
        old = table.get(setting.key)
        if old is not None and old.value == setting.value:
            continue
        table.pop(setting.key, None)
        table[setting.key] = setting
    return list(table.values())


def sysctl_effective(settings: list[SysctlSetting], key: str) -> SysctlSetting | None:
    """What systemd-sysctl writes to ``key``: its explicit assignment, else the
    glob applied last that names it (an explicit key always beats a glob;
    globs are applied in sysctl_applied order)."""
    table = sysctl_applied(settings)
    explicit = [s for s in table if not s.is_glob and s.key == key]
    if explicit:
        return explicit[-1]
    globs = [s for s in table if s.is_glob and sysctl_glob_match(s.key, key)]
    return globs[-1] if globs else None


# --- sockets -----------------------------------------------------------------------------------

TCP_LISTEN = "0A"
UDP_UNCONNECTED = "07"


@dataclass(frozen=True)
class Socket:
    proto: str           # tcp, tcp6, udp, udp6
    address: str
    port: int
    uid: int
    inode: int
    line: int            # line number in the /proc file

    @property
    def loopback(self) -> bool:
        try:
            ip = ipaddress.ip_address(self.address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        return ip.is_loopback

    @property
    def transport(self) -> str:
        return self.proto.rstrip("6")

    def endpoint(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"


def _hex_address(text: str) -> str:
    raw = bytes.fromhex(text)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, struct.pack("<I", struct.unpack(">I", raw)[0]))
    words = struct.unpack(">4I", raw)
    return socket.inet_ntop(socket.AF_INET6, struct.pack("<4I", *words))


def parse_proc_net_sockets(text: str, proto: str) -> list[Socket]:
    """Listening sockets of /proc/net/{tcp,tcp6,udp,udp6}: TCP in LISTEN, UDP
    bound and unconnected (remote address all zeros)."""
    out = []
    for number, raw in enumerate(text.splitlines(), 1):
        words = raw.split()
        if len(words) < 10 or not words[0].endswith(":"):
            continue
        local, remote, state = words[1], words[2], words[3]
        if proto.startswith("tcp"):
            if state != TCP_LISTEN:
                continue
        elif state != UDP_UNCONNECTED or remote.split(":")[0].strip("0"):
            continue
        addr_hex, port_hex = local.split(":")
        try:
            out.append(Socket(proto, _hex_address(addr_hex), int(port_hex, 16), int(words[7]),
                              int(words[9]), number))
        except (ValueError, struct.error):
            continue
    return out


def parse_ports(items: list) -> list[tuple[int, int]]:
    """[22, '8000-8080'] -> [(22, 22), (8000, 8080)]; raises ValueError on junk."""
    out = []
    for item in items:
        if isinstance(item, bool):
            raise ValueError(f"not a port: {item!r}")
        if isinstance(item, int):
            lo = hi = item
        else:
            text = str(item).strip()
            lo_s, dash, hi_s = text.partition("-")
            lo = int(lo_s)
            hi = int(hi_s) if dash else lo
        if not (0 <= lo <= hi <= 65535):
            raise ValueError(f"not a port or port range: {item!r}")
        out.append((lo, hi))
    return out


def port_allowed(port: int, ranges: list[tuple[int, int]]) -> bool:
    return any(lo <= port <= hi for lo, hi in ranges)


# --- routes --------------------------------------------------------------------------------------

RTF_GATEWAY = 0x0002
RTF_REJECT = 0x0200
RTF_LOCAL = 0x80000000
NON_UNICAST = {"local", "broadcast", "multicast", "anycast", "unreachable", "blackhole",
               "prohibit", "throw", "nat"}


@dataclass
class Route:
    dst: ipaddress.IPv4Network | ipaddress.IPv6Network
    gateway: str | None
    dev: str
    evidence: str
    table: str = "main"

    @property
    def is_default(self) -> bool:
        return self.dst.prefixlen == 0


def _le_ipv4(hex8: str) -> str:
    return socket.inet_ntop(socket.AF_INET, struct.pack("<I", int(hex8, 16)))


def parse_proc_route(text: str, file: str = "/proc/net/route") -> list[Route]:
    """IPv4 unicast routes of /proc/net/route (main table), rejects skipped."""
    out = []
    for number, raw in enumerate(text.splitlines(), 1):
        words = raw.split()
        if number == 1 or len(words) < 8:
            continue
        try:
            flags = int(words[3], 16)
            if flags & RTF_REJECT:
                continue
            dst, mask = _le_ipv4(words[1]), _le_ipv4(words[7])
            net = ipaddress.ip_network(f"{dst}/{mask}", strict=False)
            gw = _le_ipv4(words[2]) if flags & RTF_GATEWAY else None
        except ValueError:
            continue
        out.append(Route(net, gw, words[0], f"{file}:{number}: {' '.join(words)}"))
    return out


def parse_proc_ipv6_route(text: str, file: str = "/proc/net/ipv6_route") -> list[Route]:
    """IPv6 unicast routes of /proc/net/ipv6_route; rejects and local entries skipped."""
    out = []
    for number, raw in enumerate(text.splitlines(), 1):
        words = raw.split()
        if len(words) < 10:
            continue
        try:
            flags = int(words[8], 16)
            if flags & (RTF_REJECT | RTF_LOCAL):
                continue
            dst = ipaddress.IPv6Address(bytes.fromhex(words[0]))
            net = ipaddress.ip_network(f"{dst}/{int(words[1], 16)}", strict=False)
            hop = ipaddress.IPv6Address(bytes.fromhex(words[4]))
        except ValueError:
            continue
        if net.is_multicast:           # ff00::/8 is on every interface
            continue
        gw = str(hop) if (flags & RTF_GATEWAY) and int(hop) else None
        out.append(Route(net, gw, words[9], f"{file}:{number}: {' '.join(words)}"))
    return out


def parse_ip_json_routes(text: str, family: int, source: str) -> list[Route]:
    """``ip -j -4|-6 route show table all``: unicast routes of every table."""
    out = []
    for entry in json.loads(text or "[]"):
        kind = entry.get("type", "unicast")
        if kind in NON_UNICAST:
            continue
        dst = entry.get("dst", "")
        table = str(entry.get("table", "main"))
        if table == "local":
            continue
        try:
            if dst == "default":
                net = ipaddress.ip_network("0.0.0.0/0" if family == 4 else "::/0")
            else:
                net = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if net.is_multicast:
            continue
        gw = entry.get("gateway")
        if gw is None and entry.get("nexthops"):
            gws = [h.get("gateway") for h in entry["nexthops"] if h.get("gateway")]
            gw = ",".join(gws) or None
        text_form = f"{dst}" + (f" via {gw}" if gw else "") + f" dev {entry.get('dev', '?')}"
        if table != "main":
            text_form += f" table {table}"
        out.append(Route(net, gw, entry.get("dev", ""), f"{source}: {text_form}", table))
    return out


# address space that is not public (RFC 6890 special-purpose registries)
NON_PUBLIC = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15",
    "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "::/128", "::1/128", "::ffff:0:0/96", "64:ff9b:1::/48", "100::/64", "2001:db8::/32",
    "fc00::/7", "fe80::/10", "ff00::/8")]


def covered_by(net, blocks) -> bool:
    return any(net.version == b.version and net.subnet_of(b) for b in blocks)


def is_public(net) -> bool:
    """True when ``net`` reaches any public address (it is not wholly inside
    private or special-purpose space)."""
    return not covered_by(net, NON_PUBLIC)


# --- firewall ----------------------------------------------------------------------------------

@dataclass
class HookVerdict:
    """Whether traffic at one hook is denied by default, and why."""

    denied: bool
    evidence: list[str] = field(default_factory=list)


# --- dconf keyfiles -----------------------------------------------------------------------

def dconf_setting(files: list[tuple[str, str]], key: str) -> tuple[Line | None, Line | None]:
    """(the last 'name=value' line setting dconf ``key`` ('/org/x/y/name') in
    the keyfiles, the lock line naming it) over (path, text) pairs in dconf's
    order; lock files are those under a 'locks' directory."""
    group, _, name = key.strip("/").rpartition("/")
    setting = lock = None
    for path, text in files:
        if "/locks/" in path:
            lock = next((ln for ln in logical_lines(text, path) if ln.text == key), lock)
            continue
        section = None
        for ln in logical_lines(text, path, continuation=False):
            if ln.text.startswith("[") and ln.text.endswith("]"):
                section = ln.text[1:-1].strip("/")
            elif section == group and ln.text.partition("=")[0].strip() == name:
                setting = ln
    return setting, lock


# --- resolv.conf -------------------------------------------------------------------------------

def parse_resolv_conf(text: str, file: str) -> list[tuple[str, Line]]:
    out = []
    for line in logical_lines(text, file, comment_chars="#;"):
        words = line.text.split()
        if len(words) >= 2 and words[0] == "nameserver":
            out.append((words[1].split("%")[0], line))
    return out
