"""Removable-media checks (R-MED-1, R-MED-2) against recorded host trees:
every check passes on a compliant tree and fails on each way of breaking it,
including the traps of issue 9."""
import pytest

from opskit.hosts import LocalHost
from opskit.policy.model import FAIL, NA, PASS
from opskit.policy.policyfile import load_policy
from opskit.policy.fleet import check_host
from tests.fixtures.policy.trees import POLICY, Link, good_tree, write


@pytest.fixture
def tree(tmp_path):
    return good_tree(tmp_path / "host")


def run(tree, check_id, policy=POLICY, groups=None):
    report = check_host(LocalHost("rec", sysroot=tree), load_policy(explicit=policy), groups)
    result = report.result(check_id)
    assert result is not None
    return result


def evidence(result):
    return " | ".join([f.evidence for f in result.findings] + result.evidence + [result.reason])


def messages(result):
    return " | ".join(f.message for f in result.findings)


def test_compliant_tree_passes_every_check(tree):
    report = check_host(LocalHost("rec", sysroot=tree), load_policy(explicit=POLICY))
    assert {r.check: r.status for r in report.results if r.status != PASS} == {}
    assert all(r.evidence for r in report.results), "a pass must say what decided it"


# --- media.usb-storage-disabled (R-MED-2) ------------------------------------------------

def test_usb_storage_pass_cites_file_and_line(tree):
    result = run(tree, "media.usb-storage-disabled")
    assert result.status == PASS and result.rule == "R-MED-2"
    assert "/etc/modprobe.d/10-usb.conf:2: install usb-storage /bin/false" in evidence(result)


def test_usb_storage_missing_fails(tree):
    write(tree, {"/etc/modprobe.d/10-usb.conf": "install uas /bin/false\n"})
    result = run(tree, "media.usb-storage-disabled")
    assert result.status == FAIL
    assert messages(result) == "kernel module usb-storage is not disabled"
    assert result.findings[0].rule == "R-MED-2"


def test_trap_underscore_name_counts_as_dash(tree):
    write(tree, {"/etc/modprobe.d/10-usb.conf": "install usb_storage /usr/bin/false\n"
                                                "install uas true\n"})
    result = run(tree, "media.usb-storage-disabled")
    assert result.status == PASS, evidence(result)
    assert "install usb_storage /usr/bin/false" in evidence(result)


def test_trap_commented_line_does_not_count(tree):
    write(tree, {"/etc/modprobe.d/10-usb.conf": "#install usb-storage /bin/false\n"
                                                "   # blacklist usb-storage\ninstall uas /bin/true\n"})
    result = run(tree, "media.usb-storage-disabled")
    assert result.status == FAIL
    assert "usb-storage" in messages(result) and "uas" not in messages(result)


def test_trap_non_conf_file_is_ignored_and_named(tree):
    write(tree, {"/etc/modprobe.d/10-usb.conf": "install uas /bin/false\n",
                 "/etc/modprobe.d/usb-storage.disabled": "install usb-storage /bin/false\n"})
    result = run(tree, "media.usb-storage-disabled")
    assert result.status == FAIL
    assert "ignored, not *.conf: /etc/modprobe.d/usb-storage.disabled" in evidence(result)


def test_etc_file_hides_same_name_in_usr_lib(tree):
    # kmod reads /etc/modprobe.d/x.conf *instead of* /usr/lib/modprobe.d/x.conf
    write(tree, {"/usr/lib/modprobe.d/10-usb.conf": "install usb-storage /bin/false\n",
                 "/etc/modprobe.d/10-usb.conf": "install uas /bin/false\n"})
    assert run(tree, "media.usb-storage-disabled").status == FAIL
    write(tree, {"/etc/modprobe.d/10-usb.conf": None})
    write(tree, {"/usr/lib/modprobe.d/10-usb.conf": "install usb-storage /bin/false\n"
                                                    "install uas /bin/false\n"})
    assert run(tree, "media.usb-storage-disabled").status == PASS


def test_install_that_loads_the_module_fails(tree):
    write(tree, {"/etc/modprobe.d/05-first.conf":
                 "install usb-storage /sbin/modprobe --ignore-install usb-storage\n"})
    result = run(tree, "media.usb-storage-disabled")
    assert result.status == FAIL
    assert "/etc/modprobe.d/05-first.conf:1" in evidence(result)


def test_continuation_line_is_joined(tree):
    write(tree, {"/etc/modprobe.d/10-usb.conf": "install usb-storage \\\n  /bin/false\n"
                                                "install uas /bin/false\n"})
    assert run(tree, "media.usb-storage-disabled").status == PASS


def test_kernel_cmdline_blacklist_counts(tree):
    write(tree, {"/etc/modprobe.d/10-usb.conf": None,
                 "/proc/cmdline": "root=/dev/sda1 module_blacklist=usb_storage,uas\n"})
    result = run(tree, "media.usb-storage-disabled")
    assert result.status == PASS
    assert "/proc/cmdline: module_blacklist=usb_storage,uas" in evidence(result)


@pytest.mark.parametrize("cmdline", [
    # the kernel compares names byte for byte with the module's own name (usb_storage)
    "root=/dev/sda1 module_blacklist=usb-storage,uas",
    # a later module_blacklist= replaces the earlier one (core_param charp)
    "root=/dev/sda1 module_blacklist=usb_storage,uas module_blacklist=firewire_core",
    # after '--' the words go to init, not to the kernel
    "root=/dev/sda1 -- module_blacklist=usb_storage,uas",
])
def test_kernel_cmdline_blacklist_read_as_the_kernel_does(tree, cmdline):
    write(tree, {"/etc/modprobe.d/10-usb.conf": None, "/proc/cmdline": cmdline + "\n"})
    result = run(tree, "media.usb-storage-disabled")
    assert result.status == FAIL
    assert "kernel module usb-storage is not disabled" in messages(result)


def test_kernel_cmdline_dashed_name_is_explained(tree):
    write(tree, {"/etc/modprobe.d/10-usb.conf": None,
                 "/proc/cmdline": "root=/dev/sda1 module_blacklist=usb-storage,uas\n"})
    assert "names 'usb-storage', but the kernel compares module_blacklist= byte for byte " \
           "with the module's name 'usb_storage'" in evidence(run(tree, "media.usb-storage-disabled"))


def test_kernel_cmdline_blacklist_param_spelt_with_dash_and_quotes(tree):
    write(tree, {"/etc/modprobe.d/10-usb.conf": None,
                 "/proc/cmdline": 'root=/dev/sda1 module-blacklist="usb_storage,uas"\n'})
    assert run(tree, "media.usb-storage-disabled").status == PASS


def test_builtin_module_cannot_be_disabled(tree):
    write(tree, {"/lib/modules/6.1.0-test-amd64/modules.builtin":
                 "kernel/drivers/usb/storage/usb-storage.ko\n"})
    result = run(tree, "media.usb-storage-disabled")
    assert result.status == FAIL
    assert "built into the kernel" in messages(result)


def test_container_is_not_applicable(tree):
    write(tree, {"/run/systemd/container": "docker\n"})
    result = run(tree, "media.usb-storage-disabled")
    assert result.status == NA and "/run/systemd/container = docker" in result.reason


def test_dockerenv_alone_is_not_a_container(tree):
    # issue #18 item 8: a VM image with a stray /.dockerenv has its own kernel
    write(tree, {"/.dockerenv": "", "/run/.containerenv": "",
                 "/proc/1/cgroup": "0::/init.scope\n"})
    assert run(tree, "media.usb-storage-disabled").status == PASS
    write(tree, {"/proc/1/cgroup": "12:cpuset:/docker/4f1c\n0::/\n"})
    result = run(tree, "media.usb-storage-disabled")
    assert result.status == NA and "/proc/1/cgroup:1: 12:cpuset:/docker/4f1c" in result.reason
    write(tree, {"/proc/1/cgroup": None, "/proc/1/environ": "PATH=/bin\0container=lxc\0"})
    result = run(tree, "media.usb-storage-disabled")
    assert result.status == NA and "/proc/1/environ: container=lxc" in result.reason


# --- media.usb-storage-not-loaded (R-MED-2) ----------------------------------------------

def test_blacklist_alone_does_not_disable(tree):
    # issue #18 item 3: 'modprobe usb-storage' still loads a blacklisted module
    write(tree, {"/etc/modprobe.d/10-usb.conf": "blacklist usb-storage\nblacklist uas\n"})
    result = run(tree, "media.usb-storage-disabled")
    assert result.status == FAIL
    assert messages(result) == ("kernel module usb-storage is not disabled | "
                                "kernel module uas is not disabled")
    assert "/etc/modprobe.d/10-usb.conf:1: 'blacklist usb-storage' only stops loading through " \
           "an alias, 'modprobe usb-storage' still loads it" in evidence(result)


def test_modprobe_blacklist_on_cmdline_does_not_disable(tree):
    write(tree, {"/etc/modprobe.d/10-usb.conf": None,
                 "/proc/cmdline": "root=/dev/sda1 modprobe.blacklist=usb_storage,uas\n"})
    assert run(tree, "media.usb-storage-disabled").status == FAIL


def test_alias_files_count_and_hidden_files_do_not(tree):
    # kmod 30 reads *.conf and *.alias, never '.hidden' files
    write(tree, {"/etc/modprobe.d/10-usb.conf": None,
                 "/etc/modprobe.d/.00-usb.conf": "install usb-storage /bin/false\n",
                 "/usr/lib/modprobe.d/usb.alias": "install usb-storage /bin/false\n"
                                                  "install uas /bin/false\n"})
    result = run(tree, "media.usb-storage-disabled")
    assert result.status == PASS, evidence(result)
    assert "/usr/lib/modprobe.d/usb.alias:1" in evidence(result)
    write(tree, {"/usr/lib/modprobe.d/usb.alias": None})
    assert run(tree, "media.usb-storage-disabled").status == FAIL


def test_module_loaded_despite_install_false(tree):
    write(tree, {"/proc/modules": "ext4 1003520 1 - Live 0x0\n"
                                  "usb_storage 81920 1 uas, Live 0x0\n"})
    assert run(tree, "media.usb-storage-disabled").status == PASS
    result = run(tree, "media.usb-storage-not-loaded")
    assert result.status == FAIL
    assert "usb-storage is loaded now despite /etc/modprobe.d/10-usb.conf:2: install " \
           "usb-storage /bin/false" in messages(result)
    assert "/proc/modules:2: usb_storage 81920 1 uas, Live 0x0" in evidence(result)


def test_no_module_support_is_not_applicable(tree):
    write(tree, {"/proc/modules": None})
    result = run(tree, "media.usb-storage-not-loaded")
    assert result.status == NA and "/proc/modules absent" in result.reason


# --- media.firewire-thunderbolt-disabled (R-MED-2) ---------------------------------------

def test_firewire_loaded_and_not_configured_fails(tree):
    write(tree, {"/etc/modprobe.d/20-firewire.conf": "install firewire-core /bin/false\n",
                 "/proc/modules": "thunderbolt 2000 0 - Live 0x0\n"})
    result = run(tree, "media.firewire-thunderbolt-disabled")
    assert result.status == FAIL
    text = messages(result)
    assert "firewire-sbp2 is not disabled" in text and "thunderbolt is loaded now" in text
    assert result.severity == "medium"


# --- media.removable-block-devices (R-MED-2, R-MED-1) -------------------------------------

USB_DEV = "../devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block/sdb"


def test_usb_attached_disk_is_found_by_device_path(tree):
    # removable = 0 (many USB SSDs say so): the USB bus in the sysfs path decides
    write(tree, {"/sys/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/"
                 "6:0:0:0/block/sdb/removable": "0\n",
                 "/sys/block/sdb": Link(USB_DEV)})
    result = run(tree, "media.removable-block-devices")
    assert result.status == FAIL
    assert "removable block device sdb present" == messages(result)
    assert "attached through a USB bus" in evidence(result)


def test_removable_and_mounted_device_names_the_mount(tree):
    write(tree, {"/sys/block/sdc/removable": "1\n",
                 "/proc/mounts": "/dev/sda1 / ext4 rw 0 0\n/dev/sdc1 /media/stick vfat rw 0 0\n"})
    result = run(tree, "media.removable-block-devices")
    assert result.status == FAIL
    assert "mounted at /media/stick" in messages(result)
    assert "/sys/block/sdc/removable = 1" in evidence(result)
    assert "/proc/mounts:2: /dev/sdc1 /media/stick vfat rw" in evidence(result)


def test_allowed_device_passes(tree, tmp_path):
    write(tree, {"/sys/block/sr0/removable": "1\n"})
    assert run(tree, "media.removable-block-devices").status == FAIL
    policy = tmp_path / "p.yaml"
    policy.write_text("checks:\n  media.removable-block-devices: {allow_devices: [sr0]}\n")
    result = run(tree, "media.removable-block-devices", policy=str(policy))
    assert result.status == PASS and "sr0 allowed by policy" in evidence(result)


# --- media.usb-authorized-default ---------------------------------------------------------

def test_usb_authorized_default_one_fails(tree):
    write(tree, {"/sys/bus/usb/devices/usb1/authorized_default": "1\n"})
    result = run(tree, "media.usb-authorized-default")
    assert result.status == FAIL
    assert "/sys/bus/usb/devices/usb1/authorized_default = 1" in evidence(result)


def test_no_usb_bus_is_not_applicable(tree):
    write(tree, {"/sys/bus/usb": None})
    result = run(tree, "media.usb-authorized-default")
    assert result.status == NA and "no USB bus" in result.reason


# --- media.usbguard -----------------------------------------------------------------------

def test_usbguard_empty_policy_fails(tree):
    write(tree, {"/etc/usbguard/rules.conf": "# nothing yet\n\n"})
    result = run(tree, "media.usbguard")
    assert result.status == FAIL and messages(result) == "USBGuard policy is empty"
    assert "ImplicitPolicyTarget not set" in evidence(result)


def test_usbguard_empty_rules_with_implicit_block_passes(tree):
    # issue #18 item 9: no rules and ImplicitPolicyTarget=block blocks every device
    write(tree, {"/etc/usbguard/rules.conf": "# nothing yet\n",
                 "/etc/usbguard/usbguard-daemon.conf": "RuleFile=/etc/usbguard/rules.conf\n"
                                                       "ImplicitPolicyTarget=block\n"})
    result = run(tree, "media.usbguard")
    assert result.status == PASS, evidence(result)
    assert "every device is blocked: /etc/usbguard/usbguard-daemon.conf:2: " \
           "ImplicitPolicyTarget=block" in evidence(result)


def test_usbguard_implicit_allow_fails_even_with_rules(tree):
    write(tree, {"/etc/usbguard/usbguard-daemon.conf": "RuleFile=/etc/usbguard/rules.conf\n"
                                                       "ImplicitPolicyTarget=allow\n"})
    result = run(tree, "media.usbguard")
    assert result.status == FAIL
    assert messages(result) == "USBGuard allows every device that no rule matches"


def test_usbguard_missing_fails(tree):
    write(tree, {"/usr/sbin/usbguard-daemon": None})
    result = run(tree, "media.usbguard")
    assert result.status == FAIL and messages(result) == "USBGuard is not installed"


def test_usbguard_not_required_is_not_applicable(tree, tmp_path):
    write(tree, {"/usr/sbin/usbguard-daemon": None})
    policy = tmp_path / "p.yaml"
    policy.write_text("checks:\n  media.usbguard: {required: false}\n")
    result = run(tree, "media.usbguard", policy=str(policy))
    assert result.status == NA and "does not require USBGuard" in result.reason


def test_usbguard_required_for_one_group_only(tree, tmp_path):
    write(tree, {"/usr/sbin/usbguard-daemon": None})
    policy = tmp_path / "p.yaml"
    policy.write_text("groups:\n  counter:\n    checks:\n      media.usbguard: {required: true}\n")
    assert run(tree, "media.usbguard", policy=str(policy)).status == NA
    assert run(tree, "media.usbguard", policy=str(policy), groups=["counter"]).status == FAIL


# --- media.automount ----------------------------------------------------------------------

AUTOFS_UNIT = "[Service]\nExecStart=/usr/sbin/automount\n[Install]\nWantedBy=multi-user.target\n"
GNOME = {"/usr/libexec/udisks2/udisksd": "",
         "/usr/share/glib-2.0/schemas/org.gnome.desktop.media-handling.gschema.xml": "<x/>"}


def test_vendor_wants_link_starts_autofs_though_systemctl_says_disabled(tree):
    write(tree, {"/usr/lib/systemd/system/autofs.service": AUTOFS_UNIT,
                 "/usr/lib/systemd/system/multi-user.target.wants/autofs.service":
                     Link("../autofs.service")})
    result = run(tree, "media.automount")
    assert result.status == FAIL
    assert messages(result) == "autofs.service starts at boot (systemctl is-enabled: disabled)"
    assert evidence(result).startswith("/usr/lib/systemd/system/multi-user.target.wants/")


def test_masked_autofs_passes_despite_links(tree):
    write(tree, {"/usr/lib/systemd/system/autofs.service": AUTOFS_UNIT,
                 "/usr/lib/systemd/system/multi-user.target.wants/autofs.service":
                     Link("../autofs.service"),
                 "/etc/systemd/system/autofs.service": Link("/dev/null")})
    result = run(tree, "media.automount")
    assert result.status == PASS and "autofs.service: masked" in evidence(result)


def test_gnome_automount_needs_false_and_a_lock(tree):
    write(tree, GNOME)
    result = run(tree, "media.automount")
    assert result.status == FAIL
    assert messages(result) == "GNOME automounts removable media (udisks2 installed)"
    write(tree, {"/etc/dconf/db/local.d/00-media":
                 "[org/gnome/desktop/media-handling]\nautomount=false\n"})
    result = run(tree, "media.automount")
    assert messages(result).startswith("GNOME's automount=false is not locked")
    write(tree, {"/etc/dconf/db/local.d/locks/00-media":
                 "/org/gnome/desktop/media-handling/automount\n"})
    result = run(tree, "media.automount")
    assert result.status == PASS, evidence(result)
    assert "/etc/dconf/db/local.d/00-media:2: automount=false; locked in " \
           "/etc/dconf/db/local.d/locks/00-media:1" in evidence(result)
    write(tree, {"/etc/dconf/db/local.d/99-user": "[org/gnome/desktop/media-handling]\n"
                                                  "automount=true\n"})
    assert run(tree, "media.automount").status == FAIL          # a later keyfile wins

def test_autofs_enabled_and_mounted_fails(tree):
    write(tree, {"/usr/lib/systemd/system/autofs.service": AUTOFS_UNIT,
                 "/etc/systemd/system/multi-user.target.wants/autofs.service":
                     Link("/usr/lib/systemd/system/autofs.service"),
                 "/proc/mounts": "/dev/sda1 / ext4 rw 0 0\n/etc/auto.misc /misc autofs rw 0 0\n"})
    result = run(tree, "media.automount")
    assert result.status == FAIL
    assert "autofs.service starts at boot (systemctl is-enabled: enabled)" in messages(result)
    assert "automount point /misc is active" in messages(result)
