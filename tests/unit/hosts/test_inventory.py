"""Inventory parsing: shape, group union, vars, defaults, and errors with file:line."""
import os
import textwrap

import pytest

from opskit.core.config import Config
from opskit.settings import load_config
from opskit.core.errors import EXIT_USAGE, ConfigError, UsageError
from opskit.core.schema import walk_keys
from opskit.hosts.inventory import (SCHEMA, HostSpec, SSHSettings, default_inventory,
                                    load_inventory, load_inventory_file)
from opskit.hosts.local import LocalHost
from opskit.hosts.ssh import SSHHost

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "configs", "inventory.yaml")


def write(tmp_path, text, name="inventory.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


SAMPLE = """\
defaults:
  user: ops
  port: 2200
  key: keys/id_ed25519
hosts:
  web1:
    address: 10.0.0.1
    groups: [web]
    vars: {tier: front, role: web1}
  web2:
    address: web2.lan
    port: 22
    user: admin
  db1:
    address: 10.0.0.3
    groups: [db, core]
  here: {}
  image:
    address: local
    sysroot: img
groups:
  web:
    hosts: [web2]
    vars: {tier: web, zone: a}
  core:
    hosts: [web1]
    vars: {tier: core}
"""


def test_hosts_defaults_and_local(tmp_path):
    inv = load_inventory_file(write(tmp_path, SAMPLE))
    assert list(inv.hosts) == ["web1", "web2", "db1", "here", "image"]
    web1, web2 = inv.host("web1"), inv.host("web2")
    assert (web1.address, web1.port, web1.user) == ("10.0.0.1", 2200, "ops")
    assert (web2.port, web2.user) == (22, "admin")
    assert web1.key == str(tmp_path / "keys" / "id_ed25519")   # relative to the inventory
    assert inv.host("here").is_local and inv.host("image").is_local
    assert inv.host("image").sysroot == str(tmp_path / "img")
    assert inv.host("db1").endpoint == "10.0.0.3:2200"


def test_group_membership_is_union_of_both_declarations(tmp_path):
    inv = load_inventory_file(write(tmp_path, SAMPLE))
    assert inv.groups["web"] == ["web1", "web2"]           # web1 by its own list, web2 by the group
    assert inv.groups["core"] == ["web1", "db1"]
    assert inv.groups["db"] == ["db1"]                     # declared only on a host
    assert inv.host("web1").groups == ["web", "core"]
    assert inv.host("web2").groups == ["web"]


def test_vars_group_order_then_host_wins(tmp_path):
    inv = load_inventory_file(write(tmp_path, SAMPLE))
    assert inv.host("web1").vars == {"tier": "front", "zone": "a", "role": "web1"}
    assert inv.host("web2").vars == {"tier": "web", "zone": "a"}
    assert inv.host("db1").vars == {"tier": "core"}


def test_select(tmp_path):
    inv = load_inventory_file(write(tmp_path, SAMPLE))
    names = lambda specs: [s.name for s in specs]   # noqa: E731
    assert names(inv.select()) == ["web1", "web2", "db1", "here", "image"]
    assert names(inv.select(group="web")) == ["web1", "web2"]
    assert names(inv.select(["db1", "web2"])) == ["web2", "db1"]       # inventory order
    assert names(inv.select(["db1"], "web")) == ["web1", "web2", "db1"]  # union


def test_unknown_host_and_group_are_usage_errors_listing_known(tmp_path):
    inv = load_inventory_file(write(tmp_path, SAMPLE))
    with pytest.raises(UsageError) as err:
        inv.select(["web1", "nosuch"])
    assert err.value.exit_code == EXIT_USAGE
    assert "unknown host 'nosuch'" in err.value.message
    assert "web1, web2, db1, here, image" in err.value.message
    with pytest.raises(UsageError) as err:
        inv.select(group="nogroup")
    assert "unknown group 'nogroup'" in err.value.message
    assert "web, core, db" in err.value.message


@pytest.mark.parametrize("text, line, key, words", [
    ("hosts:\n  a:\n    adress: 1.2.3.4\n", 3, "hosts.a.adress", "unknown key 'adress'"),
    ("hosts:\n  a:\n    address: x\n    port: 70000\n", 4, "hosts.a.port", "TCP port"),
    ("hosts:\n  a:\n    address: x\n    port: '22'\n", 4, "hosts.a.port", "an integer"),
    ("hosts:\n  a: {}\ngroups:\n  g:\n    hosts: [a, zz]\n", 5, "groups.g.hosts[1]",
     "unknown host 'zz'"),
    ("hosts:\n  a:\n    address: 10.0.0.1\n    sysroot: /mnt\n", 4, "hosts.a.sysroot",
     "only for local hosts"),
    ("defaults:\n  host_key_policy: yolo\nhosts:\n  a: {}\n", 2, "defaults.host_key_policy",
     "'reject', 'accept-new'"),
    ("hosts:\n  a: {}\n  a: {}\n", 3, "hosts.a", "duplicate key"),
    ("hosts:\n  'bad name':\n    address: x\n", 2, "hosts.bad name", "invalid host name"),
    ("hosts:\n  a:\n    groups: web\n", 3, "hosts.a.groups", "a list"),
    ("hosts: {}\n", 1, "hosts", "no hosts"),
])
def test_errors_name_file_line_and_key(tmp_path, text, line, key, words):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_inventory_file(path)
    exc = err.value
    assert exc.exit_code == EXIT_USAGE
    assert (exc.file, exc.line, exc.key) == (path, line, key)
    assert exc.message.startswith(f"{path}:{line}: key '{key}': ")
    assert words in exc.message


def test_invalid_yaml_names_line(tmp_path):
    path = write(tmp_path, "hosts:\n  a: [unclosed\n")
    with pytest.raises(ConfigError) as err:
        load_inventory_file(path)
    assert err.value.exit_code == EXIT_USAGE and err.value.file == path and err.value.line


def test_yaml_is_loaded_safely(tmp_path):
    path = write(tmp_path, "hosts:\n  a: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError):
        load_inventory_file(path)


def test_example_inventory_is_valid_and_documents_every_key():
    inv = load_inventory_file(EXAMPLE)
    assert inv.host("app1").host_key_policy == "accept-new"
    text = open(EXAMPLE).read()
    for dotted, _key in walk_keys(SCHEMA):
        leaf = dotted.rsplit(".", 1)[-1]
        assert f"{leaf}:" in text, f"configs/inventory.yaml does not show '{dotted}'"


# --- finding the inventory from the config ---------------------------------------

def test_no_config_means_only_localhost():
    inv = load_inventory(Config(load_config(None).data))
    assert list(inv.hosts) == ["localhost"] and inv.source is None
    assert isinstance(inv.host("localhost").connect(), LocalHost)
    with pytest.raises(UsageError) as err:
        inv.host("db1")
    assert "only 'localhost'" in err.value.message


def test_inventory_key_is_relative_to_config(tmp_path):
    (tmp_path / "etc").mkdir()
    write(tmp_path, "hosts:\n  a:\n    address: 10.0.0.9\n", "etc/hosts.yaml")
    cfg = write(tmp_path, "inventory: hosts.yaml\n", "etc/opskit.yaml")
    inv = load_inventory(load_config(cfg))
    assert inv.source == str(tmp_path / "etc" / "hosts.yaml")
    assert list(inv.hosts) == ["a"]


def test_inventory_beside_config_is_found(tmp_path):
    write(tmp_path, "hosts:\n  b: {}\n")
    cfg = write(tmp_path, "operator: x\n", "opskit.yaml")
    assert list(load_inventory(load_config(cfg)).hosts) == ["b"]


def test_missing_configured_inventory_names_the_config_key(tmp_path):
    cfg = write(tmp_path, "operator: x\ninventory: nope.yaml\n", "opskit.yaml")
    with pytest.raises(ConfigError) as err:
        load_inventory(load_config(cfg))
    assert err.value.exit_code == EXIT_USAGE
    assert err.value.line == 2 and err.value.key == "inventory"
    assert "nope.yaml" in err.value.message


def test_spec_connect_applies_settings_precedence(tmp_path):
    cfg = write(tmp_path, "ssh:\n  known_hosts: kh\n  connect_timeout: 3\n"
                          "  host_key_policy: accept-new\n", "opskit.yaml")
    settings = SSHSettings.from_config(load_config(cfg))
    assert settings.known_hosts == str(tmp_path / "kh")
    inv = load_inventory_file(write(tmp_path, "defaults:\n  command_timeout: 7\nhosts:\n"
                                               "  a:\n    address: 10.0.0.1\n"
                                               "    host_key_policy: reject\n"))
    host = inv.host("a").connect(settings)
    assert isinstance(host, SSHHost)
    assert (host.port, host.known_hosts, host.connect_timeout, host.command_timeout,
            host.host_key_policy, host.allow_agent) == (22, str(tmp_path / "kh"), 3.0, 7.0,
                                                        "reject", False)
    assert host._client is None                      # nothing opened until first use
    assert host.describe() == "a (10.0.0.1:22)"


def test_default_inventory_is_local():
    spec = default_inventory().host("localhost")
    assert spec == HostSpec("localhost") and spec.endpoint == "local"
