"""shared-key (R-AUD-3): one SSH key opening several people's accounts, or declared for two."""
from __future__ import annotations

from ..findings import Finding, finding_check


@finding_check("fleet", "shared-key", fleet_wide=True)
def key_on_several_accounts(ctx, snapshot):
    by_login = ctx.declared.by_login
    for fp, where in sorted(ctx.fingerprints.items()):
        logins = sorted({login for login, _ in where})
        if len(logins) < 2:
            continue
        owners = [by_login[x].id if x in by_login else x for x in logins]
        yield Finding("shared-key", "high", f"one SSH key opens {len(logins)} accounts: "
                      f"{', '.join(logins)}", f"{fp} on " + ", ".join(
                          f"{login}@{host}" for login, host in sorted(where))[:500],
                      ", ".join(owners), ", ".join(logins), "hosts")


@finding_check("fleet", "shared-key", fleet_wide=True)
def key_declared_twice(ctx, snapshot):
    seen: dict[str, str] = {}
    for p in ctx.roster.people.values():
        for fp in ctx.declared.keys(p):
            if fp in seen and seen[fp] != p.id:
                yield Finding("shared-key", "high", f"{seen[fp]} and {p.id} are declared "
                              "with the same SSH key", f"roster ssh_keys: {fp}",
                              f"{seen[fp]}, {p.id}", None, "roster")
            seen.setdefault(fp, p.id)
