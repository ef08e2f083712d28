"""Removable-media checks (R-MED-1, R-MED-2).

External storage may not be attached to or used on insurance-system
computers (R-MED-2), and media never cross between classified and
unclassified machines (R-MED-1). We check both the configuration (modprobe.d,
USBGuard, automount) and what is true now (/proc/modules, /sys/block,
/proc/mounts, /sys/bus/usb).
"""
from __future__ import annotations

from opskit.core.schema import Key

from . import parsers as P
from . import units as U
from .container import container_reason
from .model import Finding, not_applicable, passed, verdict
from .probe import Probe
from .catalogue import Context, check

GBT_MEDIA = "8.1.10.7 a) 恶意代码防范管理: external storage checked before it is connected; " \
            "8.1.3.1 b) 边界防护: unauthorised devices"
SKIP_BLOCK = ("loop", "ram", "zram", "dm-")   # never external storage
USB_MODULES = ["usb-storage", "uas"]
FIREWIRE_TB_MODULES = ["firewire-core", "firewire-ohci", "firewire-sbp2", "thunderbolt"]


def _container_na(probe: Probe, what: str):
    reason = container_reason(probe)
    if reason:
        return not_applicable(f"container ({reason}): {what} belong to the host's kernel; "
                              "check the host itself")
    return None


# --- modprobe configuration ---------------------------------------------------------------

def modprobe_rules(probe: Probe) -> tuple[list[P.ModprobeRule], list[str], list[str]]:
    """(rules in kmod's reading order, files read, files kmod ignores that
    mention a module). A file name in an earlier directory hides the same name
    in a later one (/etc over /run over /usr/lib), as kmod does."""
    listing = {}
    for directory in P.MODPROBE_DIRS:
        names = probe.listdir(directory)
        if names is not None:
            listing[directory] = names
    # /lib and /usr/lib are one directory on merged-/usr systems: a file name is
    # read once, from the first directory that has it, so nothing is counted twice
    rules, files, ignored = [], [], []
    for directory, name in P.config_files_in_order(listing, P.MODPROBE_SUFFIXES):
        path = f"{directory}/{name}"
        text = probe.read(path)
        if text is None:
            continue
        files.append(path)
        rules.extend(P.parse_modprobe(text, path))
    for directory, names in listing.items():
        for name in names:
            if not name.endswith(P.MODPROBE_SUFFIXES) or name.startswith("."):
                path = f"{directory}/{name}"
                text = probe.read(path) or ""
                if P.parse_modprobe(text, path):
                    ignored.append(path)
    return rules, files, ignored


def module_disabled(probe: Probe, module: str) -> tuple[bool, str]:
    """Whether modprobe config (or the kernel command line) keeps ``module`` from
    loading, and the evidence that decided it."""
    rules, files, ignored = modprobe_rules(probe)
    name = P.module_name(module)
    install = P.effective_install(rules, name)
    if install is not None and install.disables:
        return True, f"{install.line.where()}: {install.line.text}"
    cmdline = P.cmdline_blacklist(probe.read("/proc/cmdline") or "")
    if name in cmdline:
        return True, f"/proc/cmdline: {cmdline[name]}"
    dashed = [m for m in cmdline if m != name and P.module_name(m) == name]
    why = f"no 'install {module} /bin/false' in " \
          f"{', '.join(files) if files else 'any *.conf of ' + ', '.join(P.MODPROBE_DIRS)}"
    if install is not None:
        why = f"{install.line.where()}: '{install.line.text}' is the install command kmod " \
              "uses (the first one read), and it may load the module"
    blacklist = [r for r in rules if r.kind == "blacklist" and r.module == name]
    if blacklist:
        why += f"; {blacklist[0].line.where()}: '{blacklist[0].line.text}' only stops " \
               f"loading through an alias, 'modprobe {module}' still loads it"
    if ignored:
        why += f" (ignored, not *.conf: {', '.join(ignored)})"
    if dashed:
        why += f"; /proc/cmdline: '{cmdline[dashed[0]]}' names '{dashed[0]}', but the kernel " \
               f"compares module_blacklist= byte for byte with the module's name '{name}'"
    return False, why


def builtin_modules(probe: Probe) -> tuple[set[str], str | None]:
    release = probe.kernel_release()
    if not release:
        return set(), None
    for base in ("/lib/modules", "/usr/lib/modules"):
        path = f"{base}/{release}/modules.builtin"
        text = probe.read(path)
        if text is not None:
            return P.parse_builtin_modules(text), path
    return set(), None


def _modules_config(probe: Probe, ctx: Context, rule: str):
    findings, evidence = [], []
    builtin, builtin_file = builtin_modules(probe)
    for module in ctx.params["modules"]:
        name = P.module_name(module)
        if name in builtin:
            findings.append(Finding(f"{module} is built into the kernel: modprobe config "
                                    "cannot disable it", f"{builtin_file}: {name}", rule=rule))
            continue
        ok, why = module_disabled(probe, module)
        if ok:
            evidence.append(f"{module} disabled: {why}")
        else:
            findings.append(Finding(f"kernel module {module} is not disabled", why, rule=rule))
    return findings, evidence


def _modules_loaded(probe: Probe, ctx: Context, rule: str):
    text = probe.read("/proc/modules")
    if text is None:
        return None
    loaded = P.parse_proc_modules(text)
    findings, evidence = [], []
    for module in ctx.params["modules"]:
        name = P.module_name(module)
        if name in loaded:
            number = next(i for i, line in enumerate(text.splitlines(), 1)
                          if P.module_name(line.split()[0]) == name)
            ok, why = module_disabled(probe, module)
            extra = f" despite {why}" if ok else ""
            findings.append(Finding(f"kernel module {module} is loaded now{extra}",
                                    f"/proc/modules:{number}: {loaded[name]}", rule=rule))
        else:
            evidence.append(f"{module} not in /proc/modules")
    return findings, evidence


@check("media.usb-storage-disabled", rule="R-MED-2", severity="high",
       title="usb-storage and uas cannot be loaded (modprobe.d)",
       gbt=GBT_MEDIA,
       cis="CIS Controls v8 10.3 (disable autorun for removable media); CIS Debian Linux "
           "Benchmark 'Ensure usb-storage kernel module is not available'",
       params={"modules": Key(list, USB_MODULES, "Modules that must be disabled.", item_type=str)})
def usb_storage_disabled(probe: Probe, ctx: Context):
    """R-MED-2: the install command kmod uses for each module (the first
    ``install M ...`` in its reading order, ``-``/``_`` alike) is /bin/false or
    /bin/true, or ``module_blacklist=M`` is on the kernel command line; a
    ``blacklist M`` alone does not stop ``modprobe M``; a built-in module fails."""
    na = _container_na(probe, "kernel modules")
    if na:
        return na
    findings, evidence = _modules_config(probe, ctx, "R-MED-2")
    return verdict(findings, evidence)


@check("media.usb-storage-not-loaded", rule="R-MED-2", severity="high",
       title="usb-storage and uas are not loaded now (/proc/modules)",
       gbt=GBT_MEDIA, cis="CIS Controls v8 10.3; CIS Debian Linux Benchmark 'Ensure "
                          "usb-storage kernel module is not available' (runtime part)",
       params={"modules": Key(list, USB_MODULES, "Modules that must not be loaded.",
                              item_type=str)})
def usb_storage_not_loaded(probe: Probe, ctx: Context):
    """R-MED-2: a blacklist does not unload a module that is already loaded
    (or loaded explicitly with modprobe); /proc/modules shows the truth."""
    na = _container_na(probe, "kernel modules")
    if na:
        return na
    got = _modules_loaded(probe, ctx, "R-MED-2")
    if got is None:
        builtin, where = builtin_modules(probe)
        hits = [m for m in ctx.params["modules"] if P.module_name(m) in builtin]
        if hits:
            return verdict([Finding(f"{m} is built into the kernel (always present)",
                                    f"{where}: {P.module_name(m)}", rule="R-MED-2") for m in hits])
        return not_applicable("kernel without loadable module support (/proc/modules absent)")
    return verdict(*got)


@check("media.firewire-thunderbolt-disabled", rule="R-MED-2", severity="medium",
       title="FireWire and Thunderbolt storage modules disabled and not loaded",
       gbt=GBT_MEDIA, cis="CIS Controls v8 10.3; CIS Benchmark 'Disable unneeded kernel modules'",
       params={"modules": Key(list, FIREWIRE_TB_MODULES, "Modules that must be disabled and "
                                                         "not loaded.", item_type=str)})
def firewire_thunderbolt(probe: Probe, ctx: Context):
    """R-MED-2: FireWire (SBP-2) and Thunderbolt attach external disks too."""
    na = _container_na(probe, "kernel modules")
    if na:
        return na
    findings, evidence = _modules_config(probe, ctx, "R-MED-2")
    got = _modules_loaded(probe, ctx, "R-MED-2")
    if got is not None:
        findings += got[0]
        evidence += got[1]
    return verdict(findings, evidence)


# --- block devices ----------------------------------------------------------------------

def _mounts(probe: Probe) -> list[tuple[int, list[str]]]:
    text = probe.read("/proc/mounts") or ""
    return [(n, line.split()) for n, line in enumerate(text.splitlines(), 1)
            if len(line.split()) >= 3]


@check("media.removable-block-devices", rule="R-MED-2", severity="high",
       title="no removable or USB-attached block device present or mounted",
       gbt=GBT_MEDIA, cis="CIS Controls v8 10.3, 10.4 (removable media)",
       params={"allow_devices": Key(list, [], "Block device names exempted (e.g. a virtual "
                                              "CD-ROM 'sr0').", item_type=str)})
def removable_block_devices(probe: Probe, ctx: Context):
    """R-MED-2, R-MED-1: /sys/block/*/removable = 1, or a device path through
    a USB bus, is external storage; /proc/mounts shows it in use."""
    na = _container_na(probe, "block devices")
    if na:
        return na
    devices = probe.listdir("/sys/block")
    if devices is None:
        return not_applicable("no /sys/block (sysfs not mounted)")
    allowed = set(ctx.params["allow_devices"])
    mounts = _mounts(probe)
    findings, evidence = [], []
    checked = 0
    for dev in devices:
        if dev.startswith(SKIP_BLOCK):
            continue
        checked += 1
        reasons = []
        removable = probe.value(f"/sys/block/{dev}/removable")
        if removable == "1":
            reasons.append(f"/sys/block/{dev}/removable = 1")
        real = probe.realpath(f"/sys/block/{dev}")
        if real and "/usb" in real:
            reasons.append(f"/sys/block/{dev} -> {real} (attached through a USB bus)")
        if not reasons:
            continue
        if dev in allowed:
            evidence.append(f"{dev} allowed by policy (allow_devices): {reasons[0]}")
            continue
        where = [f"/proc/mounts:{n}: {' '.join(w[:4])}" for n, w in mounts
                 if w[0].startswith(f"/dev/{dev}")]
        message = f"removable block device {dev} present"
        if where:
            message += f" and mounted at {', '.join(w.split()[2] for w in where)}"
        findings.append(Finding(message, "; ".join(reasons + where), rule="R-MED-2"))
    if not findings:
        evidence.append(f"{checked} block device(s) in /sys/block, none removable or on USB")
    return verdict(findings, evidence)


@check("media.usb-authorized-default", rule="R-MED-2", severity="medium",
       title="new USB devices are not authorised by default",
       gbt=GBT_MEDIA, cis="CIS Controls v8 10.3; USBGuard / kernel USB authorization",
       params={})
def usb_authorized_default(probe: Probe, ctx: Context):
    """R-MED-2: /sys/bus/usb/devices/usbN/authorized_default is 0 (nothing) or
    2 (internal ports only), so a plugged-in stick stays unusable until allowed."""
    na = _container_na(probe, "USB controllers")
    if na:
        return na
    names = probe.listdir("/sys/bus/usb/devices")
    if names is None:
        return not_applicable("no USB bus (/sys/bus/usb/devices absent)")
    roots = [n for n in names if n.startswith("usb") and n[3:].isdigit()]
    if not roots:
        return passed("no USB host controllers in /sys/bus/usb/devices")
    findings, evidence = [], []
    for root in roots:
        path = f"/sys/bus/usb/devices/{root}/authorized_default"
        value = probe.value(path)
        if value in ("0", "2"):
            evidence.append(f"{path} = {value}")
        else:
            findings.append(Finding(f"USB bus {root} authorises new devices by default",
                                    f"{path} = {value if value is not None else '(absent)'}",
                                    rule="R-MED-2"))
    return verdict(findings, evidence)


USBGUARD_BINARIES = ("/usr/sbin/usbguard-daemon", "/usr/bin/usbguard-daemon", "/usr/bin/usbguard")


USBGUARD_CONF = "/etc/usbguard/usbguard-daemon.conf"


def _usbguard_implicit_target(probe: Probe) -> tuple[str, str]:
    """(ImplicitPolicyTarget, evidence): what the daemon does with a device no
    rule matches. Unset counts as unknown, not as the daemon's built-in
    default: an empty policy passes only when the file says block."""
    conf = probe.read(USBGUARD_CONF) or ""
    target, where = "", f"{USBGUARD_CONF}: ImplicitPolicyTarget not set"
    for line in P.logical_lines(conf, USBGUARD_CONF):
        key, _, value = line.text.partition("=")
        if key.strip() == "ImplicitPolicyTarget":
            target, where = value.strip(), f"{line.where()}: {line.text}"
    return target, where


def _usbguard_rules(probe: Probe) -> tuple[list[str], list[str]]:
    """(rule lines with file:line, files read) per usbguard-daemon.conf."""
    conf = probe.read(USBGUARD_CONF) or ""
    rule_file, rule_folder = "/etc/usbguard/rules.conf", "/etc/usbguard/rules.d"
    for line in P.logical_lines(conf, USBGUARD_CONF):
        key, _, value = line.text.partition("=")
        if key.strip() == "RuleFile":
            rule_file = value.strip()
        elif key.strip() == "RuleFolder":
            rule_folder = value.strip().rstrip("/")
    paths = [rule_file] + [f"{rule_folder}/{n}" for n in probe.listdir(rule_folder) or []
                           if n.endswith(".conf")]
    rules, files = [], []
    for path in paths:
        text = probe.read(path)
        if text is None:
            continue
        files.append(path)
        rules += [f"{ln.where()}: {ln.text}" for ln in P.logical_lines(text, path)]
    return rules, files


@check("media.usbguard", rule="R-MED-2", severity="medium",
       title="USBGuard installed and blocking unknown devices (where required)",
       gbt=GBT_MEDIA, cis="CIS Controls v8 10.3, 10.4; CIS Benchmark 'Ensure USBGuard is "
                          "installed' (RHEL)",
       params={"required": Key(bool, False, "Fail when USBGuard is missing, empty or "
                                            "not running.")})
def usbguard(probe: Probe, ctx: Context):
    """R-MED-2 where the policy requires USBGuard: daemon installed, a rule file
    with at least one rule or ImplicitPolicyTarget block/reject (then every
    device is blocked), never ImplicitPolicyTarget=allow, and (on live hosts)
    the daemon running."""
    if not ctx.params["required"]:
        return not_applicable("the policy does not require USBGuard here "
                              "(media.usbguard required: false)")
    na = _container_na(probe, "USB devices")
    if na:
        return na
    binary = next((b for b in USBGUARD_BINARIES if probe.exists(b)), None)
    if binary is None:
        return verdict([Finding("USBGuard is not installed",
                                f"none of {', '.join(USBGUARD_BINARIES)} exists", rule="R-MED-2")])
    findings, evidence = [], [f"{binary} exists"]
    rules, files = _usbguard_rules(probe)
    target, target_where = _usbguard_implicit_target(probe)
    blocking = target in ("block", "reject")
    if target == "allow":
        findings.append(Finding("USBGuard allows every device that no rule matches",
                                target_where, rule="R-MED-2"))
    if rules:
        evidence.append(f"{len(rules)} rule(s), first {rules[0]}")
    elif blocking:
        # no rules + implicit block: every device is blocked (issue #18 item 9)
        evidence.append(f"no rules, so every device is blocked: {target_where}")
    else:
        findings.append(Finding("USBGuard policy is empty", "no rules in "
                                + (", ".join(files) or "/etc/usbguard/rules.conf (absent)")
                                + f"; {target_where}", rule="R-MED-2"))
    if not probe.recorded:
        running = [pid for pid, comm in probe.processes().items() if comm == "usbguard-daemon"]
        if running:
            evidence.append(f"usbguard-daemon running (pid {running[0]})")
        else:
            findings.append(Finding("usbguard-daemon is not running",
                                    "no process named usbguard-daemon in /proc/*/comm",
                                    rule="R-MED-2"))
    return verdict(findings, evidence)


AUTOMOUNT_UNITS = ["autofs.service"]
UDISKS = ("/usr/libexec/udisks2/udisksd", "/usr/lib/udisks2/udisksd")
GNOME_SCHEMA = "/usr/share/glib-2.0/schemas/org.gnome.desktop.media-handling.gschema.xml"
DCONF_DB = "/etc/dconf/db"
MEDIA_KEY = "/org/gnome/desktop/media-handling/automount"


@check("media.automount", rule="R-MED-2", severity="medium",
       title="automounting (autofs, desktop) disabled",
       gbt=GBT_MEDIA, cis="CIS Controls v8 10.3; CIS Debian Linux Benchmark 'Ensure autofs "
                          "services are not in use', 'Ensure GDM automatic mounting of "
                          "removable media is disabled'",
       params={"units": Key(list, AUTOMOUNT_UNITS, "Automounter units that boot must not "
                                                   "start.", item_type=str)})
def automount(probe: Probe, ctx: Context):
    """R-MED-2: no automounter unit enabled or pulled in at boot (systemctl
    is-enabled semantics plus vendor *.wants links: opskit.policy.units), no
    autofs mount other than systemd's binfmt_misc, no automount process, and
    where udisks2 and GNOME are installed, GNOME's media automount switched
    off (and locked) in a dconf keyfile."""
    findings, evidence = [], []
    for unit in ctx.params["units"]:
        _unit_findings(probe, unit, findings, evidence)
    for number, words in _mounts(probe):
        if words[2] == "autofs" and words[1] != "/proc/sys/fs/binfmt_misc":
            findings.append(Finding(f"automount point {words[1]} is active",
                                    f"/proc/mounts:{number}: {' '.join(words[:4])}",
                                    rule="R-MED-2"))
    if not probe.recorded:
        for pid, comm in sorted(probe.processes().items()):
            if comm == "automount":
                findings.append(Finding("the automount daemon is running",
                                        f"/proc/{pid}/comm = automount", rule="R-MED-2"))
                break
    _desktop_automount(probe, findings, evidence)
    if not findings:
        evidence.append("no autofs mounts in /proc/mounts")
    return verdict(findings, evidence)


def _unit_findings(probe: Probe, unit: str, findings: list, evidence: list) -> None:
    state = U.unit_state(probe, unit)
    if state.state == "alias" and state.fragment:
        target = state.fragment.rsplit("/", 1)[-1]
        evidence.append(f"{unit} is an alias of {target}")
        state = U.unit_state(probe, target)
    if state.starts_at_boot:
        why = state.pulled_by[0] if state.pulled_by else state.evidence
        findings.append(Finding(f"{state.unit} starts at boot (systemctl is-enabled: "
                                f"{state.state})", why, rule="R-MED-2"))
    else:
        evidence.append(f"{state.unit}: {state.state} ({state.evidence})")


def _desktop_automount(probe: Probe, findings: list, evidence: list) -> None:
    """GNOME automounts media through udisks2 unless dconf says automount=false."""
    udisks = next((p for p in UDISKS if probe.exists(p)), None)
    if udisks is None or not probe.exists(GNOME_SCHEMA):
        evidence.append("no desktop automount (udisks2 with GNOME) installed")
        return
    setting, locked = P.dconf_setting(probe_keyfiles(probe), MEDIA_KEY)
    if setting is None or setting.text.split("=", 1)[1].strip() != "false":
        where = f"{setting.where()}: {setting.text}" if setting else \
            f"no 'automount=false' under [org/gnome/desktop/media-handling] in {DCONF_DB}/*.d/*"
        findings.append(Finding("GNOME automounts removable media (udisks2 installed)",
                                f"{udisks} and {GNOME_SCHEMA} exist; {where}", rule="R-MED-2"))
    elif locked is None:
        findings.append(Finding("GNOME's automount=false is not locked: a user can turn it "
                                "back on", f"{setting.where()}: {setting.text}; no "
                                f"{MEDIA_KEY} in {DCONF_DB}/*.d/locks/*", rule="R-MED-2"))
    else:
        evidence.append(f"{setting.where()}: {setting.text}; locked in {locked.where()}")


def probe_keyfiles(probe: Probe) -> list[tuple[str, str]]:
    """(path, text) of every dconf keyfile and lock file under /etc/dconf/db/*.d."""
    out = []
    for db in sorted(probe.listdir(DCONF_DB) or []):
        if not db.endswith(".d"):
            continue
        for name in sorted(probe.listdir(f"{DCONF_DB}/{db}") or []):
            path = f"{DCONF_DB}/{db}/{name}"
            if name == "locks":
                for lock in sorted(probe.listdir(path) or []):
                    out.append((f"{path}/{lock}", probe.read(f"{path}/{lock}") or ""))
            else:
                text = probe.read(path)
                if text is not None:
                    out.append((path, text))
    return out
