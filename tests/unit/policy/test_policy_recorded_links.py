"""Recorded host trees with absolute symlinks (issue #18 item 7): they resolve
inside the recorded root, as under chroot, wherever the probe follows links,
so a disk image's settings are not lost; a link to /dev/null (which the tree
does not hold) still masks."""
import pytest

from opskit.hosts.local import LocalHost
from opskit.policy.model import FAIL, PASS
from opskit.policy.probe import Probe
from tests.fixtures.policy.trees import Link, good_tree, write
from tests.unit.policy.test_policy_media import evidence, messages, run


@pytest.fixture
def tree(tmp_path):
    return good_tree(tmp_path / "host")


def test_absolute_sysctl_link_is_read_inside_the_tree(tree):
    # Debian's own layout, with an absolute link as a disk image may carry it
    write(tree, {"/etc/sysctl.d/99-sysctl.conf": Link("/etc/sysctl.conf"),
                 "/etc/sysctl.conf": "# local\nnet.ipv4.ip_forward = 1\n"})
    result = run(tree, "net.forwarding")
    assert result.status == FAIL, evidence(result)
    assert "/etc/sysctl.d/99-sysctl.conf:2: net.ipv4.ip_forward = 1" in evidence(result)


def test_absolute_modprobe_link_is_read_inside_the_tree(tree):
    write(tree, {"/etc/modprobe.d/10-usb.conf": Link("/usr/share/site/usb.conf"),
                 "/usr/share/site/usb.conf": "install usb-storage /bin/false\n"
                                             "install uas /bin/false\n"})
    result = run(tree, "media.usb-storage-disabled")
    assert result.status == PASS, evidence(result)
    assert "/etc/modprobe.d/10-usb.conf:1: install usb-storage /bin/false" in evidence(result)


def test_absolute_link_to_a_directory_and_through_dotdot(tree):
    write(tree, {"/etc/sysctl.d": None})
    write(tree, {"/etc/sysctl.d": Link("/srv/image-etc/sysctl.d"),
                 "/srv/image-etc/sysctl.d/60-net.conf": Link("/srv/image-etc/x/../net.conf"),
                 "/srv/image-etc/x": {},
                 "/srv/image-etc/net.conf": "net.ipv4.ip_forward = 1\n"})
    result = run(tree, "net.forwarding")
    assert result.status == FAIL and "/etc/sysctl.d/60-net.conf:1" in evidence(result)


def test_link_to_dev_null_still_masks(tree):
    # /etc hides /usr/lib's file of the same name; a /dev/null link there is a mask
    write(tree, {"/usr/lib/sysctl.d/50-fwd.conf": "net.ipv4.ip_forward = 1\n",
                 "/etc/sysctl.d/50-fwd.conf": Link("/dev/null")})
    result = run(tree, "net.forwarding")
    assert result.status == PASS, evidence(result)


def test_probe_reads_resolve_inside(tree):
    write(tree, {"/etc/a.conf": Link("/etc/b.conf"), "/etc/b.conf": "inside\n",
                 "/etc/gone.conf": Link("/nowhere/x")})
    probe = Probe(LocalHost("rec", sysroot=tree))
    assert probe.read("/etc/a.conf") == "inside\n"
    assert probe.inside("/etc/a.conf") == "/etc/b.conf"
    assert probe.read("/etc/gone.conf") == ""            # leads out of the tree: empty
    assert probe.exists("/etc/gone.conf") and not probe.exists("/etc/none.conf")
    assert probe.read("/etc/none.conf") is None
