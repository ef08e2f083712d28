"""collection-failed (R-AUD-2): hosts and databases the snapshot could not read."""
from __future__ import annotations

from ..findings import Finding, finding_check


@finding_check("fleet", "collection-failed", fleet_wide=True)
def hosts_not_collected(ctx, snapshot):
    for h in snapshot.hosts:
        if h.get("status") != "ok":
            yield Finding("collection-failed", "high", f"host {h['name']} could not be "
                          f"collected ({h.get('status')})", h.get("error") or "", where=h["name"])


@finding_check("fleet", "collection-failed", fleet_wide=True)
def databases_not_collected(ctx, snapshot):
    for d in snapshot.databases:
        if d.get("status") != "ok":
            yield Finding("collection-failed", "high", f"database {d['name']} could not be "
                          f"collected", d.get("error") or "", where=f"db:{d['name']}")
