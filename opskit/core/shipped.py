"""Where the files opskit ships beside its code are: policies, playbooks, examples.

From a source checkout they are the top-level ``configs/`` and ``playbooks/``
folders; a ``pip install`` puts the same files under ``<prefix>/share/opskit/``
(``[options.data_files]`` in setup.cfg).
"""
from __future__ import annotations

import os
import sys


def shipped_path(*parts: str) -> str:
    """``shipped_path('playbooks')`` -> the checkout's playbooks/, else
    <prefix>/share/opskit/playbooks (the first that exists; the checkout path if neither)."""
    import opskit
    checkout = os.path.normpath(os.path.join(os.path.dirname(opskit.__file__), "..", *parts))
    if os.path.exists(checkout):
        return checkout
    for prefix in (sys.prefix, sys.base_prefix, "/usr/local", "/usr"):
        installed = os.path.join(prefix, "share", "opskit", *parts)
        if os.path.exists(installed):
            return installed
    return checkout
