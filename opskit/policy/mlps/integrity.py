"""可信验证 8.1.4.6, 数据完整性 8.1.4.7, 数据保密性 8.1.4.8, 剩余信息保护 8.1.4.9,
个人信息保护 8.1.4.10, 数据备份恢复 8.1.4.11 (GB/T 22239-2019; R-SEC-1).

What a host check can honestly judge (database transport encryption, swap,
core dumps) is judged; the rest is a ``manual`` item carrying the question
the assessor must answer, with whatever the host could tell as evidence."""
from __future__ import annotations

import re

from opskit.core.schema import Key

from .. import parsers as P
from ..model import Finding, manual, not_applicable, passed, verdict
from ..network import sysctl_settings
from ..probe import Probe
from ..catalogue import Context
from . import facts as F
from . import parse as M
from .common import mlps

TRUST = ("8.1.4.6", "可基于可信根对计算设备的系统引导程序、系统程序、重要配置参数和应用程序等进行"
                    "可信验证，并在应用程序的关键执行环节进行动态可信验证，在检测到其可信性受到"
                    "破坏后进行报警，并将验证结果形成审计记录送至安全管理中心")
INTEGRITY_A = ("8.1.4.7 a)", "应采用校验技术或密码技术保证重要数据在传输过程中的完整性")
CONFID_A = ("8.1.4.8 a)", "应采用密码技术保证重要数据在传输过程中的保密性")
CONFID_B = ("8.1.4.8 b)", "应采用密码技术保证重要数据在存储过程中的保密性")
RESIDUAL_A = ("8.1.4.9 a)", "应保证鉴别信息所在的存储空间被释放或重新分配前得到完全清除")
RESIDUAL_B = ("8.1.4.9 b)", "应保证存有敏感数据的存储空间被释放或重新分配前得到完全清除")
PRIVACY = ("8.1.4.10", "应仅采集和保存业务必需的用户个人信息；应禁止未授权访问和非法使用用户"
                       "个人信息")
BACKUP = ("8.1.4.11", "应提供重要数据的本地数据备份与恢复功能；应提供异地实时备份功能")


def _pg_clusters(probe: Probe) -> list[str]:
    return [f"/etc/postgresql/{v}/{c}" for v in sorted(probe.listdir("/etc/postgresql") or [])
            for c in sorted(probe.listdir(f"/etc/postgresql/{v}") or [])
            if probe.exists(f"/etc/postgresql/{v}/{c}/postgresql.conf")]


LOOPBACK = ("127.0.0.1/32", "::1/128", "127.0.0.1", "::1", "localhost", "samehost")


def _postgres(probe: Probe, cluster: str):
    """ssl must be on when pg_hba.conf lets any client in over the network;
    a non-loopback 'host' (or 'hostnossl') line accepts clear text even then."""
    findings, evidence = [], []
    conf = f"{cluster}/postgresql.conf"
    settings = M.key_values(probe.read(conf) or "", conf)
    ssl = settings.get("ssl")
    value = (ssl[0].strip("'").lower() if ssl else "off")
    where = f"{ssl[1].where()}: {ssl[1].text}" if ssl else f"{conf}: ssl not set (off)"
    hba = f"{cluster}/pg_hba.conf"
    remote = []
    for line in P.logical_lines(probe.read(hba) or "", hba, continuation=False):
        words = line.text.split()
        if words and words[0].startswith("host") and len(words) >= 4 \
                and words[3] not in LOOPBACK:
            remote.append(line)
            if words[0] in ("host", "hostnossl"):
                findings.append(Finding(f"pg_hba.conf allows unencrypted connections from "
                                        f"{words[3]} ('{words[0]}', not 'hostssl')",
                                        f"{line.where()}: {line.text}"))
    if not remote:
        evidence.append(f"{hba}: no client admitted over the network (local and loopback "
                        f"only); {where}")
    elif value not in ("on", "true", "yes", "1"):
        findings.append(Finding("PostgreSQL ssl is off while pg_hba.conf admits network "
                                "clients", f"{where}; {remote[0].where()}: {remote[0].text}"))
    else:
        evidence.append(where)
    return findings, evidence


MYSQL_REQUIRE = re.compile(r"^\s*require[-_]secure[-_]transport\s*=\s*(on|1|true)", re.I | re.M)


@mlps("mlps.integrity.db-transport", clause=CONFID_A[0], requirement=CONFID_A[1],
      severity="high", title="database connections from the network are encrypted "
                             "(PostgreSQL ssl + hostssl, MySQL require_secure_transport)",
      remediation="postgresql.conf 'ssl = on' with the site certificate; in pg_hba.conf "
                  "'hostssl' instead of 'host' for every non-loopback line; MySQL/MariaDB "
                  "'require_secure_transport = ON'")
def db_transport(probe: Probe, ctx: Context):
    """Insurance and personal data cross the network between application and
    database: a 'host' line in pg_hba.conf accepts that without TLS."""
    clusters = _pg_clusters(probe)
    mysql = F.glob(probe, "/etc/mysql/my.cnf") + F.glob(probe, "/etc/mysql/mariadb.conf.d/*.cnf") \
        + F.glob(probe, "/etc/mysql/mysql.conf.d/*.cnf")
    if not clusters and not mysql:
        return not_applicable("no database server configuration (/etc/postgresql/*/*, "
                              "/etc/mysql)")
    findings, evidence = [], []
    for cluster in clusters:
        f, e = _postgres(probe, cluster)
        findings += f
        evidence += e
    if mysql:
        hits = [p for p in mysql if MYSQL_REQUIRE.search(probe.read(p) or "")]
        if hits:
            evidence.append(f"{hits[0]}: require_secure_transport = ON")
        else:
            findings.append(Finding("MySQL/MariaDB does not require secure transport",
                                    f"no require_secure_transport = ON in {', '.join(mysql)}"))
    return verdict(findings, evidence)


def _crypt(probe: Probe, device: str) -> bool:
    """A device-mapper device set up by cryptsetup (dm uuid CRYPT-...)."""
    name = device.rsplit("/", 1)[-1]
    real = probe.realpath(device) or device
    name = real.rsplit("/", 1)[-1]
    uuid = probe.value(f"/sys/block/{name}/dm/uuid") or ""
    return uuid.startswith("CRYPT-")


@mlps("mlps.residual.swap", clause=RESIDUAL_B[0], requirement=RESIDUAL_B[1],
      severity="medium", title="swap encrypted (dm-crypt) or absent",
      remediation="encrypt swap with a random key in /etc/crypttab ('cswap /dev/sdX2 "
                  "/dev/urandom swap,cipher=aes-xts-plain64,size=256') or turn it off")
def swap(probe: Probe, ctx: Context):
    """Swapped-out pages (passwords, personal data) survive on disk after
    the process ends unless the swap device is encrypted with a throwaway key."""
    text = probe.read("/proc/swaps")
    if text is None:
        return not_applicable("no /proc/swaps")
    findings, evidence = [], []
    for number, raw in enumerate(text.splitlines()[1:], 2):
        device = raw.split()[0] if raw.split() else ""
        if not device:
            continue
        if _crypt(probe, device):
            evidence.append(f"/proc/swaps:{number}: {device} is dm-crypt")
        else:
            findings.append(Finding(f"swap on {device} is not encrypted",
                                    f"/proc/swaps:{number}: {raw.strip()}"))
    if not findings and not evidence:
        evidence.append("/proc/swaps: no swap in use")
    return verdict(findings, evidence)


@mlps("mlps.residual.core-dumps", clause=RESIDUAL_A[0], requirement=RESIDUAL_A[1],
      severity="medium", title="core dumps off (limits hard core 0, fs.suid_dumpable 0, "
                               "systemd-coredump Storage=none)",
      cis="CIS Debian 12 1.5.2-1.5.3 'Ensure core dumps are restricted'",
      remediation="'* hard core 0' in /etc/security/limits.d/mlps.conf; 'fs.suid_dumpable = 0' "
                  "in /etc/sysctl.d/60-mlps.conf; 'Storage=none' in /etc/systemd/coredump.conf")
def core_dumps(probe: Probe, ctx: Context):
    """A core dump writes a process's memory (keys, passwords) to disk."""
    findings, evidence = [], []
    limits = None
    for path in ["/etc/security/limits.conf"] + F.glob(probe, "/etc/security/limits.d/*.conf"):
        for line in P.logical_lines(probe.read(path) or "", path, continuation=False):
            w = line.text.split()
            if len(w) >= 4 and w[0] == "*" and w[1] in ("hard", "-") and w[2] == "core":
                limits = (w[3], f"{line.where()}: {line.text}")
    if limits and limits[0] == "0":
        evidence.append(limits[1])
    else:
        findings.append(Finding("no '* hard core 0' limit", limits[1] if limits else
                                "/etc/security/limits.conf, limits.d/*.conf"))
    runtime = F.sysctl_runtime(probe, "fs.suid_dumpable")
    settings, _ = sysctl_settings(probe)
    boot = P.sysctl_effective(settings, "fs.suid_dumpable")
    if runtime not in (None, "0"):
        findings.append(Finding(f"fs.suid_dumpable = {runtime} now",
                                f"/proc/sys/fs/suid_dumpable = {runtime}"))
    if boot is None or boot.value != "0":
        findings.append(Finding("fs.suid_dumpable is not set to 0 at boot", f"{boot.line.where()}"
                                f": {boot.line.text}" if boot else "no sysctl.d file sets it"))
    else:
        evidence.append(f"{boot.line.where()}: {boot.line.text}")
    pattern = F.sysctl_runtime(probe, "kernel.core_pattern") or ""
    if "systemd-coredump" in pattern:
        conf = F.conf_dir_settings(probe, "/etc/systemd/coredump.conf",
                                   "/etc/systemd/coredump.conf.d")
        storage = conf.get("Storage", ("external", "Storage unset (external)"))
        if storage[0] != "none":
            findings.append(Finding(f"systemd-coredump stores dumps (Storage={storage[0]})",
                                    storage[1]))
    return verdict(findings, evidence)


def _boot_evidence(probe: Probe) -> list[str]:
    out = []
    if probe.listdir("/sys/firmware/efi") is not None:
        sb = [n for n in probe.listdir("/sys/firmware/efi/efivars") or []
              if n.startswith("SecureBoot-")]
        out.append(f"UEFI boot; SecureBoot variable {'present' if sb else 'absent'}")
    else:
        out.append("no /sys/firmware/efi (legacy BIOS boot or a container)")
    tpm = probe.listdir("/sys/class/tpm")
    out.append(f"TPM: {', '.join(tpm)}" if tpm else "no /sys/class/tpm device")
    return out


@mlps("mlps.trust.verification", clause=TRUST[0], requirement=TRUST[1], severity="medium",
      title="trusted verification of boot, programs and configuration (可信验证)",
      remediation="document the trusted-computing measures (TPM/TCM measured boot, signed "
                  "packages, IMA) and where verification results are sent")
def trusted_verification(probe: Probe, ctx: Context):
    """A host check sees whether a TPM and Secure Boot exist, not whether a
    trusted root verifies the chain and reports to the management centre."""
    return manual("Does a trusted root (TPM/TCM) verify the boot loader, system programs, key "
                  "configuration and applications, raise an alarm when verification fails, and "
                  "send the results to the security management centre?", _boot_evidence(probe))


@mlps("mlps.integrity.important-data", clause=INTEGRITY_A[0], requirement=INTEGRITY_A[1],
      severity="medium", title="integrity of important data in transit and at rest "
                               "(数据完整性)",
      remediation="name the mechanisms (TLS, signed backups -- opskit backup authenticates "
                  "every pack --, database checksums) in the assessment record")
def important_data(probe: Probe, ctx: Context):
    """Which data is important, and how it is protected, is the system's design."""
    return manual("For authentication data, business data, audit data, configuration and "
                  "personal information: which checksum or cryptographic mechanism protects "
                  "their integrity in transit (8.1.4.7 a) and in storage (8.1.4.7 b)?")


@mlps("mlps.confidentiality.storage", clause=CONFID_B[0], requirement=CONFID_B[1],
      severity="medium", title="important data encrypted at rest (数据保密性)",
      remediation="encrypt the data volumes (LUKS) or the database columns holding personal "
                  "and authentication data; record the key management")
def storage_confidentiality(probe: Probe, ctx: Context):
    """Which disks hold important data is not visible from the host; the
    dm-crypt devices present are reported as evidence."""
    crypt = [n for n in probe.listdir("/sys/block") or [] if n.startswith("dm-")
             and (probe.value(f"/sys/block/{n}/dm/uuid") or "").startswith("CRYPT-")]
    seen = f"dm-crypt devices: {', '.join(crypt)}" if crypt else "no dm-crypt device"
    return manual("Are authentication data, important business data and personal information "
                  "stored encrypted (which volumes, columns or files, with which key "
                  "management)?", seen)


@mlps("mlps.residual.memory", clause=RESIDUAL_A[0], requirement=RESIDUAL_A[1],
      severity="low", title="authentication data cleared before memory/storage is reused",
      remediation="obtain the vendor's statement for the applications holding credentials")
def residual_memory(probe: Probe, ctx: Context):
    """The OS frees pages; whether applications wipe credentials first is not
    observable from outside."""
    return manual("Do the applications and the database clear buffers holding authentication "
                  "data before releasing them (vendor statement or test)? Swap and core dumps "
                  "are checked by mlps.residual.swap and mlps.residual.core-dumps.")


@mlps("mlps.privacy.personal-info", clause=PRIVACY[0], requirement=PRIVACY[1],
      severity="medium", title="personal information collected only as needed, access "
                               "authorised (个人信息保护)",
      remediation="keep the data inventory and the access approvals (opskit access) for the "
                  "assessor")
def personal_info(probe: Probe, ctx: Context):
    """Data minimisation is a property of the business system, not the host."""
    return manual("Is only the personal information the insurance business needs collected "
                  "and stored on this host, and is every access to it authorised (access "
                  "requests, audit trail)?")


@mlps("mlps.backup.local-remote", clause=BACKUP[0], requirement=BACKUP[1], severity="medium",
      title="important data backed up locally and off-site, restores tested (数据备份恢复)",
      remediation="'opskit backup' with an off-site repository; keep the drill results "
                  "('opskit backup drill') in the evidence pack")
def backup(probe: Probe, ctx: Context):
    """Backups run elsewhere (the backup host, the repository): the host
    alone cannot show them."""
    return manual("Is this host's important data backed up locally and to a remote site in "
                  "(near) real time, and when was a restore last tested (opskit backup drill "
                  "results)?")
