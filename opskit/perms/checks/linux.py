"""Linux hosts: accounts, groups, sudo rights and SSH keys against the roster.

``host`` checks get a HostFacts, ``account`` checks an AccountFacts
(opskit.perms.facts) of the kinds they are registered ``on``: ``second-root``,
``unaccounted`` (nobody declared it), a ``leaver``'s, or an active ``person``'s.
"""
from __future__ import annotations

import datetime as _dt

from ..findings import DiffRow, Finding, finding_check
from ..sudoers import covers


def _groups_text(groups) -> str:
    return ', '.join(sorted(groups)) or '-'


def _difference(a, kind: str, item: str, change: str, diff_evidence: str, check: str,
                severity: str, message: str, evidence: str):
    """A difference on account ``a`` of an active person: the diff row, then its finding."""
    yield DiffRow(a.person.id, a.login, a.host.name, kind, item, change, diff_evidence)
    yield Finding(check, severity, message, evidence, a.person.id, a.login, a.host.name)


@finding_check("host", "declared-missing")
def account_missing(ctx, host):
    """R-ACC-3: an active person expected on the host has no account there."""
    accounts = host.accounts
    for p, groups in ctx.expected_people(host):
        if p.login in accounts:
            continue
        yield DiffRow(p.id, p.login, host.name, "account", p.login, "missing",
                      f"post {p.post or '-'} host groups {', '.join(sorted(groups))}")
        yield Finding("declared-missing", "low", f"{p.id} has no account on {host.name}",
                      f"roster: host groups {', '.join(sorted(groups))}; "
                      f"host groups: {_groups_text(host.groups)}", p.id, p.login, host.name)


@finding_check("account", "generic-account", on=("second-root",))
def second_root(ctx, a):
    """R-AUD-3: uid 0 on an account other than root."""
    yield Finding("generic-account", "high", f"{a.login} on {a.host.name} has uid 0: a "
                  "second root account nobody is accountable for",
                  f"/etc/passwd: {a.login} uid 0", None, a.login, a.host.name)


@finding_check("account", "generic-account", on=("unaccounted",))
def generic_unknown_account(ctx, a):
    if ctx.is_generic(a.login):
        yield Finding("generic-account", "low" if a.frozen else "medium",
                      f"generic or shared account {a.login} on {a.host.name}",
                      f"name matches perms.generic_names; uid {a.uid}, password "
                      f"{a.acct.get('password')}, shell {a.acct.get('shell')}",
                      None, a.login, a.host.name)


@finding_check("account", "not-in-roster", on=("unaccounted",))
def account_not_in_roster(ctx, a):
    """R-ACC-1: an account nobody declared (system, ignored and service accounts aside)."""
    acct, items = a.acct, a.sudo_items
    yield Finding("not-in-roster", "low" if a.frozen else "medium",
                  f"account {a.login} on {a.host.name} is not in the roster",
                  f"uid {a.uid}, password {acct.get('password')}, "
                  f"{'expired' if acct.get('expired') else 'not expired'}, shell "
                  f"{acct.get('shell')}" + (f", {len(items)} sudo rule(s)" if items else ""),
                  None, a.login, a.host.name)


@finding_check("account", "not-frozen", on=("leaver",))
def leaver_not_frozen(ctx, a):
    """R-ACC-6: whatever still lets a departing/transferred/departed person in."""
    p, acct = a.person, a.acct
    left = _ways_in(acct, a.sudo_items, a.keys, a.host.crontabs.get(a.login, ()))
    if not a.frozen and acct.get("groups"):
        left.append(f"groups {', '.join(acct['groups'])}")
    if not left:
        return
    for item in left:
        yield DiffRow(p.id, p.login, a.host.name, "state", item, "extra",
                      f"status {p.status}: the account must be frozen")
    yield Finding("not-frozen", "medium" if p.status == "departing" else "high",
                  f"{p.id} ({p.status}) is not frozen on {a.host.name}", "; ".join(left),
                  p.id, p.login, a.host.name)


def _ways_in(acct: dict, sudo_items, keys, crontab) -> list[str]:
    left = []
    if not acct.get("locked"):
        left.append(f"password {acct.get('password')} (not locked)")
    if not acct.get("expired"):
        left.append("account not expired")
    if not acct.get("nologin"):
        left.append(f"login shell {acct.get('shell')}")
    if keys:
        left.append(f"{len(keys)} SSH key(s) in {keys[0].get('source', '').rsplit(':', 1)[0]}")
    live_sudo = [i for i in sudo_items if not i.command.startswith("!")]
    if live_sudo:
        left.append(f"sudo {'; '.join(i.text() for i in live_sudo[:3])} ({live_sudo[0].source})")
    if crontab:
        left.append(f"{len(crontab)} crontab entr{'y' if len(crontab) == 1 else 'ies'} "
                    f"({crontab[0].get('source')})")
    return left


@finding_check("account", "beyond-role", on=("person",))
def outside_host_groups(ctx, a):
    """R-ACC-4: a live account on a host outside the person's host groups."""
    if a.expected or a.frozen:
        return
    host = a.host
    yield from _difference(a, "account", a.login, "extra",
                           f"host groups {_groups_text(host.groups)}",
                           "beyond-role", "medium", f"{a.person.id} has an account on "
                           f"{host.name}, outside the host groups of their post",
                           f"roster host groups: {_groups_text(a.host_groups)}"
                           f"; {host.name} is in: {_groups_text(host.groups)}")


@finding_check("account", "declared-missing", on=("person",))
def active_but_expired(ctx, a):
    """R-ACC-3: an active person's account is expired. A locked password alone is normal
    for key-only logins and is not reported."""
    if not (a.expected and a.acct.get("expired")):
        return
    yield from _difference(a, "state", "account expired", "missing", "the person is active",
                           "declared-missing", "low", f"{a.person.id}'s account on "
                           f"{a.host.name} is expired though they are active",
                           f"password {a.acct.get('password')}, expire_day "
                           f"{a.acct.get('expire_day')}")


@finding_check("account", "beyond-role", on=("person",))
def extra_groups(ctx, a):
    extra = set(a.acct.get("groups", ())).difference(a.declared_groups, ctx.ignore_groups)
    for g in sorted(extra):
        yield from _difference(a, "group", g, "extra", "", "beyond-role", "medium",
                               f"{a.person.id} is in group {g} on {a.host.name}, which none "
                               "of their roles gives",
                               f"/etc/group: {g}; declared roles: {', '.join(a.roles) or '-'}")


@finding_check("account", "declared-missing", on=("person",))
def missing_groups(ctx, a):
    if not a.expected:
        return
    for g in sorted(a.declared_groups.difference(a.acct.get("groups", ()))):
        yield from _difference(a, "group", g, "missing", "", "declared-missing", "low",
                               f"{a.person.id} is not in group {g} on {a.host.name}",
                               f"declared by roles {', '.join(a.roles)}")


@finding_check("account", "beyond-role", on=("person",))
def extra_sudo(ctx, a):
    declared = a.declared_sudo
    for it in a.sudo_items:
        if not any(covers(d, it) for d in declared):
            yield from _difference(a, "sudo", it.text(), "extra", f"{it.source} via {it.via}",
                                   "beyond-role", "high", f"{a.person.id} may sudo "
                                   f"'{it.text()}' on {a.host.name}, beyond their roles",
                                   f"{it.source} (via {it.via}); declared: "
                                   f"{'; '.join(d.text() for d in declared) or 'no sudo'}")


@finding_check("account", "declared-missing", on=("person",))
def missing_sudo(ctx, a):
    if not a.declared_sudo:
        return
    allowed = [i for i in a.sudo_items if not i.command.startswith("!")]
    for d in a.declared_sudo:
        if not any(covers(i, d, ignore_hosts=True) for i in allowed):
            yield from _difference(a, "sudo", d.text(), "missing", d.source,
                                   "declared-missing", "low", f"{a.person.id} lacks sudo "
                                   f"'{d.text()}' on {a.host.name}", f"declared by {d.source}")


@finding_check("account", "beyond-role", on=("person",))
def extra_keys(ctx, a):
    for k in a.keys:
        if k["fingerprint"] not in a.declared_keys:
            yield from _difference(a, "key", k["fingerprint"], "extra", k.get("source", ""),
                                   "beyond-role", "medium", f"{a.person.id} has an SSH key on "
                                   f"{a.host.name} that the roster does not list",
                                   f"{k.get('source')}: {k['type']} {k['fingerprint']}")


@finding_check("account", "declared-missing", on=("person",))
def missing_keys(ctx, a):
    if not (a.expected and a.declared_keys):
        return
    present = {k["fingerprint"] for k in a.keys}
    for fp in sorted(set(a.declared_keys) - present):
        yield from _difference(a, "key", fp, "missing", "", "declared-missing", "low",
                               f"{a.person.id}'s SSH key {fp} is not installed on "
                               f"{a.host.name}", "roster ssh_keys")


@finding_check("account", "generic-account", on=("person",))
def generic_login(ctx, a):
    if ctx.is_generic(a.login):
        yield Finding("generic-account", "medium", f"{a.person.id}'s login {a.login} looks "
                      "generic or shared", "name matches perms.generic_names",
                      a.person.id, a.login, a.host.name)


@finding_check("account", "dormant", on=("unaccounted", "person"))
def dormant(ctx, a):
    """R-ACC-4: no login for perms.dormant_days (nothing is concluded without login records;
    a new account not used yet is not dormant)."""
    opts = ctx.opts
    if a.frozen or not a.host.has_login_sources or a.login in opts.ignore_accounts \
            or a.uid < opts.min_uid:
        return
    person, login, hname = a.person.id if a.person else None, a.login, a.host.name
    rec = a.host.last_login.get(login)
    if rec is not None:
        if rec["time"] < ctx.dormant_before:
            when = _dt.datetime.fromtimestamp(rec["time"], _dt.timezone.utc).date().isoformat()
            yield Finding("dormant", "low", f"{login} has not logged in on {hname} since {when}",
                          f"last login {when} ({rec['source']}); perms.dormant_days = "
                          f"{opts.dormant_days}", person, login, hname)
        return
    changed = a.acct.get("last_change_day")
    if changed is not None and ctx.today - changed < opts.dormant_days:
        return                                  # a new account, not yet used
    since = (f"password last changed day {changed}" if changed is not None
             else "no password change date")
    yield Finding("dormant", "low", f"{login} has no recorded login on {hname}",
                  f"none in the login records ({since}); perms.dormant_days = "
                  f"{opts.dormant_days}", person, login, hname)
