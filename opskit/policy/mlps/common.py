"""What every MLPS level-3 check shares: registration under the ``mlps3``
profile with its GB/T 22239-2019 clause and requirement, and small verdict
helpers."""
from __future__ import annotations

from ..catalogue import check
from ..model import not_applicable

PROFILE = ("mlps3",)
STANDARD = "GB/T 22239-2019"


def mlps(id: str, *, clause: str, requirement: str, title: str, remediation: str,
         rule: str = "R-SEC-1", severity: str = "high", cis: str = "", params=None,
         commands=None):
    """Register a check of the mlps3 profile. ``clause`` e.g. '8.1.4.1 a)';
    ``requirement`` the clause's words (Chinese, as the assessor reads them)."""
    return check(id, title=title, rule=rule, gbt=f"{STANDARD} {clause} {requirement}",
                 cis=cis or "-", severity=severity, params=params, category="mlps",
                 remediation=remediation, profiles=PROFILE, commands=commands)


def no_dpkg():
    return not_applicable("no /var/lib/dpkg/status: not a Debian-family host (package checks "
                          "read the dpkg database)")
