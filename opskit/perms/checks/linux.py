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


@finding_check("host", "declared-missing")
def account_missing(ctx, host):
    """R-ACC-3: an active person expected on the host has no account there."""
    for p in ctx.people():
        if not p.active or p.login in host.accounts:
            continue
        groups = ctx.declared.host_groups(p)
        if host.expects(groups):
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
    yield DiffRow(a.person.id, a.login, host.name, "account", a.login, "extra",
                  f"host groups {_groups_text(host.groups)}")
    yield Finding("beyond-role", "medium", f"{a.person.id} has an account on {host.name}, "
                  "outside the host groups of their post",
                  f"roster host groups: {_groups_text(a.host_groups)}"
                  f"; {host.name} is in: {_groups_text(host.groups)}",
                  a.person.id, a.login, host.name)


@finding_check("account", "declared-missing", on=("person",))
def active_but_expired(ctx, a):
    """R-ACC-3: an active person's account is expired. A locked password alone is normal
    for key-only logins and is not reported."""
    if not (a.expected and a.acct.get("expired")):
        return
    pid = a.person.id
    yield DiffRow(pid, a.login, a.host.name, "state", "account expired", "missing",
                  "the person is active")
    yield Finding("declared-missing", "low", f"{pid}'s account on {a.host.name} is "
                  "expired though they are active",
                  f"password {a.acct.get('password')}, expire_day "
                  f"{a.acct.get('expire_day')}", pid, a.login, a.host.name)


@finding_check("account", "beyond-role", on=("person",))
def extra_groups(ctx, a):
    pid, hname = a.person.id, a.host.name
    actual = set(a.acct.get("groups", ())) - ctx.ignore_groups
    for g in sorted(actual - a.declared_groups):
        yield DiffRow(pid, a.login, hname, "group", g, "extra")
        yield Finding("beyond-role", "medium", f"{pid} is in group {g} on {hname}, "
                      "which none of their roles gives",
                      f"/etc/group: {g}; declared roles: {', '.join(a.roles) or '-'}",
                      pid, a.login, hname)


@finding_check("account", "declared-missing", on=("person",))
def missing_groups(ctx, a):
    if not a.expected:
        return
    pid, hname = a.person.id, a.host.name
    for g in sorted(a.declared_groups - set(a.acct.get("groups", ()))):
        yield DiffRow(pid, a.login, hname, "group", g, "missing")
        yield Finding("declared-missing", "low", f"{pid} is not in group {g} on {hname}",
                      f"declared by roles {', '.join(a.roles)}", pid, a.login, hname)


@finding_check("account", "beyond-role", on=("person",))
def extra_sudo(ctx, a):
    pid, hname, declared = a.person.id, a.host.name, a.declared_sudo
    for it in a.sudo_items:
        if not any(covers(d, it) for d in declared):
            yield DiffRow(pid, a.login, hname, "sudo", it.text(), "extra",
                          f"{it.source} via {it.via}")
            yield Finding("beyond-role", "high", f"{pid} may sudo '{it.text()}' on "
                          f"{hname}, beyond their roles",
                          f"{it.source} (via {it.via}); declared: "
                          f"{'; '.join(d.text() for d in declared) or 'no sudo'}",
                          pid, a.login, hname)


@finding_check("account", "declared-missing", on=("person",))
def missing_sudo(ctx, a):
    pid, hname = a.person.id, a.host.name
    allowed = [i for i in a.sudo_items if not i.command.startswith("!")]
    for d in a.declared_sudo:
        if not any(covers(i, d, ignore_hosts=True) for i in allowed):
            yield DiffRow(pid, a.login, hname, "sudo", d.text(), "missing", d.source)
            yield Finding("declared-missing", "low", f"{pid} lacks sudo '{d.text()}' "
                          f"on {hname}", f"declared by {d.source}", pid, a.login, hname)


@finding_check("account", "beyond-role", on=("person",))
def extra_keys(ctx, a):
    pid, hname = a.person.id, a.host.name
    for k in a.keys:
        if k["fingerprint"] not in a.declared_keys:
            yield DiffRow(pid, a.login, hname, "key", k["fingerprint"], "extra",
                          k.get("source", ""))
            yield Finding("beyond-role", "medium", f"{pid} has an SSH key on {hname} "
                          "that the roster does not list",
                          f"{k.get('source')}: {k['type']} {k['fingerprint']}",
                          pid, a.login, hname)


@finding_check("account", "declared-missing", on=("person",))
def missing_keys(ctx, a):
    if not (a.expected and a.declared_keys):
        return
    pid, hname = a.person.id, a.host.name
    present = {k["fingerprint"] for k in a.keys}
    for fp in sorted(set(a.declared_keys) - present):
        yield DiffRow(pid, a.login, hname, "key", fp, "missing")
        yield Finding("declared-missing", "low", f"{pid}'s SSH key {fp} is not "
                      f"installed on {hname}", "roster ssh_keys", pid, a.login, hname)


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
