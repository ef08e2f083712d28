"""The declared model: roster.yaml and roles.yaml (R-ACC-2, R-ACC-5, R-ACC-6, R-ACC-8)."""
import textwrap

import pytest

from opskit.accounts.declared import load_declared
from opskit.accounts.roles import load_roles, parse_roles
from opskit.accounts.roster import load_roster, parse_roster
from opskit.core.errors import ConfigError, UsageError
from opskit.core.yamlfile import parse_yaml
from opskit.settings import load_config

ROLES = textwrap.dedent("""\
    roles:
      sysadmin: {tier: admin, linux: {groups: [adm], sudo: ["ALL=(ALL:ALL) ALL"]}}
      clerk: {tier: operator, postgres: {roles: [claims_rw], databases: [insurance]}}
      viewer: {tier: query, postgres: {roles: [claims_ro]}}
      refund: {tier: special, postgres: {roles: [refund_exec]}, review_by: benefit}
      benefit: {tier: special, review_by: refund}
    posts:
      maint: {roles: [sysadmin], host_groups: [all]}
      desk: {roles: [clerk], host_groups: [app]}
""")


def model(text=ROLES):
    return parse_roles(parse_yaml(text, "roles.yaml"))


def roster(text, m=None):
    return parse_roster(parse_yaml(textwrap.dedent(text), "roster.yaml"), m or model())


def test_shipped_examples_load_and_agree():
    m = load_roles("configs/roles.yaml")
    r = load_roster("configs/roster.yaml", m)
    for person in r.people.values():
        assert not m.conflicts(r.roles_of(person)), person.id


def test_default_sod_rules_forbid_admin_with_business_roles():
    m = model()
    assert [c.sod.id for c in m.conflicts(["sysadmin", "clerk"])] == ["maintainer-not-operator"]
    assert [c.sod.rule for c in m.conflicts(["sysadmin", "refund"])] == ["R-ACC-2"]
    assert m.conflicts(["clerk", "viewer"]) == []
    assert "sysadmin" in m.conflicts(["sysadmin", "clerk"])[0].describe()


def test_role_pair_rule_and_explicit_empty_section():
    text = ROLES + "separation_of_duties:\n  no-both: {rule: R-ACC-5, roles: [refund, benefit]}\n"
    m = model(text)
    assert [c.sod.rule for c in m.conflicts(["refund", "benefit"])] == ["R-ACC-5"]
    assert m.conflicts(["sysadmin", "clerk"]) == []   # only the declared rule applies


def test_grants_from_roles():
    m = model()
    assert m.linux_groups(["sysadmin", "clerk"]) == ["adm"]
    assert m.sudo_rules(["sysadmin", "sysadmin"]) == ["ALL=(ALL:ALL) ALL"]
    assert m.pg_roles(["clerk", "viewer"], "insurance") == ["claims_ro", "claims_rw"]
    assert m.pg_roles(["clerk"], "other") == []


def test_roles_of_post_own_grants_and_inactive_people_hold_none():
    r = roster("""
        people:
          a: {post: desk, roles: [viewer]}
          b: {post: maint, status: departed}
    """)
    r.grants = {"a": ["refund"]}
    assert r.roles_of(r.person("a")) == ["clerk", "viewer", "refund"]
    assert r.roles_of(r.person("b")) == []          # R-ACC-6
    assert r.host_groups_of(r.person("b")) == ["all"]


@pytest.mark.parametrize("text, key, expected", [
    ("people:\n  a: {post: nope}\n", "people.a.post", "unknown post 'nope'"),
    ("people:\n  a: {roles: [nope]}\n", "people.a.roles[0]", "unknown role 'nope'"),
    ("people:\n  a: {backup: ghost}\n", "people.a.backup", "unknown person 'ghost'"),
    ("people:\n  a: {backup: a}\n", "people.a.backup", "own backup"),
    ("people:\n  a: {status: gone}\n", "people.a.status", "expected one of"),
    ("people:\n  a: {ssh_keys: [not-a-key]}\n", "people.a.ssh_keys[0]", "expected '<type> <base64>"),
    ("people:\n  a: {signing_key: ssh-rsa AAAA}\n", "people.a.signing_key", "ssh-ed25519"),
    ("people:\n  Bad Name: {}\n", "people.Bad Name", "not a valid login name"),
    ("people:\n  a: {}\n  b: {login: a}\n", "people.b", "already used by 'a'"),
    ("people:\n  a: {}\nservice_accounts:\n  svc: {owner: ghost}\n", "service_accounts.svc.owner",
     "unknown person"),
])
def test_roster_errors_name_file_line_and_key(text, key, expected):
    with pytest.raises(ConfigError) as err:
        roster(text)
    assert f"key '{key}'" in str(err.value) and expected in str(err.value)
    assert str(err.value).startswith("roster.yaml:")


@pytest.mark.parametrize("text, expected", [
    ("roles:\n  r: {tier: boss}\n", "expected one of"),
    ("roles:\n  r: {tier: special, review_by: ghost}\n", "unknown role 'ghost'"),
    ("roles:\n  r: {tier: admin, linux: {sudo: ['bob ALL\\nroot ALL']}}\n", "invalid sudo rule"),
    ("roles: {}\nposts:\n  p: {roles: [ghost]}\n", "unknown role 'ghost'"),
    ("roles: {}\nseparation_of_duties:\n  s: {tiers: [admin]}\n", "at least two"),
    ("roles: {}\nseparation_of_duties:\n  s: {tiers: [admin, boss]}\n", "unknown tier"),
])
def test_roles_errors(text, expected):
    with pytest.raises(ConfigError) as err:
        model(text)
    assert expected in str(err.value) and str(err.value).startswith("roles.yaml:")


def test_unknown_person_is_a_usage_error():
    r = roster("people:\n  a: {}\n")
    with pytest.raises(UsageError, match="unknown person 'zz'"):
        r.person("zz")
    assert r.by_login("a").id == "a" and r.by_login("zz") is None


def test_load_declared_finds_files_beside_config(tmp_path):
    (tmp_path / "roles.yaml").write_text(ROLES)
    (tmp_path / "roster.yaml").write_text("people:\n  a: {post: desk}\n")
    (tmp_path / "opskit.yaml").write_text("operator: x\n")
    r = load_declared(load_config(str(tmp_path / "opskit.yaml")))
    assert r.roles_of(r.person("a")) == ["clerk"]
    (tmp_path / "roster.yaml").unlink()
    with pytest.raises(ConfigError, match="no roster.yaml found"):
        load_declared(load_config(str(tmp_path / "opskit.yaml")))


# --- SSH keys are checked as ssh-keygen -lf reads them (#22 item 4) ---------------------------

def _keygen(tmp_path, kind, bits=None):
    import subprocess
    path = tmp_path / f"k-{kind}-{bits}"
    subprocess.run(["ssh-keygen", "-q", "-t", kind, *(["-b", str(bits)] if bits else []), "-N",
                    "", "-C", "c", "-f", str(path)], check=True)
    with open(f"{path}.pub") as fh:
        return fh.read().strip(), path.read_text()


@pytest.mark.parametrize("kind,bits", [("ed25519", None), ("rsa", 2048), ("ecdsa", 256),
                                       ("ecdsa", 384), ("ecdsa", 521)])
def test_real_public_keys_load_and_their_private_keys_are_refused(tmp_path, kind, bits):
    public, private = _keygen(tmp_path, kind, bits)
    assert roster(f"people:\n  a: {{ssh_keys: ['{public}']}}\n").people["a"].ssh_keys == [public]
    text = "people:\n  a:\n    ssh_keys:\n      - |\n" + "".join(
        f"        {line}\n" for line in private.splitlines())
    with pytest.raises(ConfigError, match=r"roster.yaml:\d+: key 'people.a.ssh_keys\[0\]'.*"
                                          "this is a private key"):
        roster(text)


@pytest.mark.parametrize("line,why", [
    # the key the example roster shipped with: 31 bytes of payload, ssh-keygen -lf refuses it
    ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHdlbGwsIHRoaXMgaXMgYW4gZXhhbXBsZSBrZXk x",
     "malformed ssh-ed25519 key"),
    ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHdlbGw= x", "malformed ssh-ed25519 key"),
    ("ssh-ed25519 AAAA%%%% x", "not valid base64"),
    ("ssh-dss AAAAB3NzaC1kc3MAAACBAP x", "unknown key type 'ssh-dss'"),
    ("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIDtEYkGHZ+60WkR/guAKeEAMtyFzUAeiVqhrTyZTMMC5 x",
     "the key data says 'ssh-ed25519', the line says ssh-rsa"),
    ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDtEYkGHZ+60WkR/guAKeEAMtyFzUAeiVqhrTyZTMMC5AAAA x",
     "unexpected byte"),
])
def test_malformed_keys_are_refused_naming_file_line_and_key(line, why):
    with pytest.raises(ConfigError) as err:
        roster(f"people:\n  a:\n    name: A\n    ssh_keys:\n      - ok\n      - {line}\n"
               .replace("      - ok\n", "      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDtEYkGHZ+60Wk"
                                       "R/guAKeEAMtyFzUAeiVqhrTyZTMMC5 ok\n"))
    message = str(err.value)
    assert message.startswith("roster.yaml:6: key 'people.a.ssh_keys[1]'"), message
    assert why in message and "\n" not in message


def test_a_small_rsa_key_is_refused(tmp_path):
    import base64
    import struct

    def s(b):
        return struct.pack(">I", len(b)) + b
    blob = s(b"ssh-rsa") + s(b"\x01\x00\x01") + s(b"\x00" + b"\xc3" * 64)   # 512 bits
    line = "ssh-rsa " + base64.b64encode(blob).decode()
    with pytest.raises(ConfigError, match="RSA modulus of 512 bits"):
        roster(f"people:\n  a: {{ssh_keys: ['{line}']}}\n")


def test_row_security_declaration():
    """roles.yaml row_security (R-ACC-4): tables that must have row-level security."""
    m = model(ROLES + "row_security:\n  ins.insured: {all_rows: [sysadmin], "
                      "databases: [insurance]}\n")
    rs = m.row_security["ins.insured"]
    assert rs.all_rows == ["sysadmin"] and rs.applies(("ins", "insurance"))
    assert not rs.applies(("other",))
    assert model().row_security == {}
    with pytest.raises(UsageError, match=r"roles.yaml:\d+.*row_security.ins.insured.all_rows"
                                         r".*unknown role 'nobody'"):
        model(ROLES + "row_security:\n  ins.insured: {all_rows: [nobody]}\n")
    with pytest.raises(UsageError, match="expected schema.table, got 'insured'"):
        model(ROLES + "row_security:\n  insured: {}\n")
