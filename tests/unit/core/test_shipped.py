"""Shipped files (policies, playbooks, example configs) are found from a source
checkout and from a pip install, which puts them under <prefix>/share/opskit."""
import os
import sys

import opskit
from opskit.core.shipped import shipped_path


def test_checkout_layout_wins():
    root = os.path.dirname(os.path.dirname(os.path.abspath(opskit.__file__)))
    assert shipped_path("playbooks") == os.path.join(root, "playbooks")
    assert os.path.isfile(os.path.join(shipped_path("configs", "policies"), "baseline.yaml"))


def test_installed_layout_under_prefix(tmp_path, monkeypatch):
    site = tmp_path / "lib" / "python3" / "site-packages" / "opskit"
    site.mkdir(parents=True)
    share = tmp_path / "share" / "opskit" / "playbooks"
    share.mkdir(parents=True)
    monkeypatch.setattr(opskit, "__file__", str(site / "__init__.py"))
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    assert shipped_path("playbooks") == str(share)
    # nothing anywhere: the checkout path, so error messages name a real expectation
    assert shipped_path("nothing-here").endswith(os.path.join("site-packages", "nothing-here"))
