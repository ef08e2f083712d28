"""Access requests (R-ACC-3): raised, approved by someone else, applied by the designated admin.

CONTRACT (the rest of opskit.accounts and opskit.perms call only these):
  applied_grants(config) -> dict[person_id, list[role]]  roles granted by applied requests
  open_store(config) -> RequestStore                     the request store of this config
  RequestStore.get(request_id) -> AccessRequest          (UsageError, exit 2, if unknown)
  RequestStore.claim_unfreeze(request_id, person_id, actor) -> AccessRequest
      checks: kind 'unfreeze', for person_id, state 'approved', actor is a designated
      admin who is neither the requester nor an approver; else raises (exit 2).
  RequestStore.mark_applied(request_id, actor, details: dict) -> AccessRequest
This file is a placeholder until the store is written.
"""
from __future__ import annotations


def applied_grants(config) -> dict[str, list[str]]:
    """Roles granted to people by applied access requests, by person id."""
    return {}
