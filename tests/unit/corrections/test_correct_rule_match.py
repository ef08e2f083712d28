"""Risk rules match tables by spelling and by the names the server resolved (R-DAT-3).

No database here: ``names`` is what effects.relation_names returns on PostgreSQL
(the relation's schema-qualified name, then its partition ancestors). Matching may
only ever add rules to what the spelling alone matched, never drop one.
"""
from __future__ import annotations

import pytest

from opskit.corrections.rulesfile import Registry


def _rule(tables, **kw):
    return dict({"tables": tables, "targets": [], "operations": [], "min_rows": 0, "approvals": 1,
                 "levels": [], "auditor": False}, **kw)


REG = Registry({}, {}, {"parent": _rule(["prefunds"], approvals=3),
                        "qualified": _rule(["public.claims"], auditor=True),
                        "bare": _rule(["refunds"], approvals=2),
                        "typo": _rule(["no_such"], approvals=2)})
NAMES = {"prefunds_2024": ["public.prefunds_2024", "public.prefunds"], "claims": ["public.claims"],
         "other.claims": ["other.claims"], "refunds": ["public.refunds"], "public.claims": ["public.claims"],
         "public.claims_archive": ["public.claims_archive"], "no_such": []}


@pytest.mark.parametrize("table, names, rules", [
    ("prefunds_2024", NAMES, ["parent"]),                # a partition: its parent's rule
    ("prefunds_2024", None, []),                         # by spelling alone it was missed (the hole)
    ("claims", NAMES, ["qualified"]),                    # unqualified spelling, qualified rule
    ("claims", None, []),
    ("public.claims", None, ["qualified"]),
    ("other.claims", NAMES, []),                         # must NOT match: another schema's table
    ("public.claims_archive", NAMES, []),                # must NOT match: only a prefix in common
    ("public.refunds", None, ["bare"]),                  # an unqualified rule covers any schema (kept)
    ("refunds", NAMES, ["bare"]),
])
def test_rule_matching(table, names, rules):
    assert REG.requirement("his", table, "UPDATE", 1, names).rules == rules


def test_a_rule_table_that_does_not_resolve_is_named():
    assert REG.rule_tables("his") == ["no_such", "prefunds", "public.claims", "refunds"]
    warnings = REG.unresolved("his", NAMES)
    assert len(warnings) == 1 and "'typo'" in warnings[0] and "'no_such'" in warnings[0]
    assert REG.unresolved("his", {}) == []              # nothing resolved (SQLite): nothing to say
