"""Shared world for the access-request tests: a config, roster.yaml and roles.yaml in
tmp_path (R-ACC-1, R-ACC-2, R-ACC-3, R-ACC-5). Not a test module by itself (no tests)."""
from __future__ import annotations

from pathlib import Path

ROLES = """\
roles:
  sysadmin:
    tier: admin
    linux: {groups: [adm]}
  dba:
    tier: admin
  claims-clerk:
    tier: operator
  claims-viewer:
    tier: query
    linux: {groups: [users]}
  refund-officer:
    tier: special
    review_by: benefit-officer
  benefit-officer:
    tier: special
    review_by: refund-officer
posts:
  system-maintainer: {roles: [sysadmin], host_groups: [all]}
  database-maintainer: {roles: [dba], host_groups: [db]}
  claims-desk: {roles: [claims-clerk], host_groups: [app]}
  section-head: {roles: [claims-viewer], host_groups: [app]}
  leader: {roles: [claims-viewer], host_groups: []}
separation_of_duties:
  maintainer-not-operator:
    rule: R-ACC-2
    description: system maintainers never take part in business operations
    tiers: [admin, operator]
  maintainer-not-special:
    rule: R-ACC-2
    tiers: [admin, special]
  refund-not-benefit:
    rule: R-ACC-5
    description: the one who activates benefits does not approve refunds
    roles: [refund-officer, benefit-officer]
"""

ROSTER = """\
people:
  hu.head:   {post: section-head}
  hu.head2:  {post: section-head}
  lead.one:  {post: leader}
  lead.two:  {post: leader}
  adm.wang:  {post: system-maintainer}
  adm.li:    {post: database-maintainer}
  clerk.a:   {post: claims-desk, login: clerka}
  clerk.b:   {post: claims-desk, roles: [benefit-officer]}
  gone.c:    {post: claims-desk, status: departed}
"""

CONFIG = """\
accounts:
  requesters: [hu.head, hu.head2]
  approvers: [lead.one, lead.two, hu.head2]
  access_admins: [adm.wang, adm.li]
"""


class World:
    def __init__(self, tmp_path: Path, config: str = CONFIG, roster: str = ROSTER,
                 roles: str = ROLES):
        self.tmp = Path(tmp_path)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.home = self.tmp / "opskit-home"   # = $OPSKIT_HOME of tests/conftest.py
        self.config_path = self.tmp / "opskit.yaml"
        self.roster_path = self.tmp / "roster.yaml"
        self.config_path.write_text(f"state_dir: {self.home}\n" + config)
        self.keys = self.tmp / "keys"
        self.write_roster(roster)
        (self.tmp / "roles.yaml").write_text(roles)
        # one offline host (a sysroot with its own account database) in group 'app':
        # provisioning by 'access apply' lands there, never on this machine
        from tests.harness.accounts import make_userdb_root
        self.sysroot = make_userdb_root(self.tmp / "app1-root")
        (self.tmp / "inventory.yaml").write_text(
            f"hosts:\n  app1:\n    sysroot: {self.sysroot}\n    groups: [app]\n")

    def write_roster(self, roster: str, skip: tuple = ()) -> None:
        """Write roster.yaml with every person's signing_key (but those in ``skip``)."""
        from tests.harness.signing import with_signing_keys
        self.roster_path.write_text(with_signing_keys(roster, skip))

    def key(self, who: str):
        """``who``'s Signer (registered in the roster unless skipped)."""
        from tests.harness.signing import person_key
        return person_key(who)

    def key_file(self, who: str) -> str:
        from tests.harness.signing import key_file
        return key_file(self.keys, who)

    def passwd(self) -> str:
        return (Path(self.sysroot) / "etc" / "passwd").read_text()

    def group(self) -> str:
        return (Path(self.sysroot) / "etc" / "group").read_text()

    def env(self, who: str | None = None) -> dict:
        env = {"OPSKIT_CONFIG": str(self.config_path), "OPSKIT_HOME": str(self.home)}
        env["OPSKIT_OPERATOR"] = who or ""
        env["OPSKIT_SIGNING_KEY"] = self.key_file(who) if who else ""
        return env

    def config(self):
        from opskit.settings import load_config
        return load_config(str(self.config_path))

    def store(self):
        from opskit.accounts.requests import open_store
        return open_store(self.config())
