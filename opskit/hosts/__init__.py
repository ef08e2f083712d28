"""Hosts: one interface for local and SSH machines, the inventory, and fan-out.

    from opskit.hosts import load_inventory, SSHSettings, fan_out

    inventory = load_inventory(app.config)
    settings = SSHSettings.from_config(app.config)
    outcomes = fan_out(inventory.select(group="db"), collect, concurrency=settings.concurrency,
                       timeout_per_host=60, ssh_settings=settings)

``SSHHost`` lives in ``opskit.hosts.ssh`` (imported on demand: paramiko is
only loaded when a remote host is used).
"""
from .base import (FileStat, Host, HostAuthFailed, HostBatchError, HostCommandError, HostError,
                   HostFileNotFound, HostKeyRejected, HostPathError, HostPermissionError,
                   HostTimeout, HostUnreachable, RunResult, Script)
from .fanout import HostOutcome, fan_out
from .inventory import (HostSpec, Inventory, SSHSettings, default_inventory, load_inventory,
                        load_inventory_file)
from .local import LocalHost

__all__ = [
    "FileStat", "Host", "HostAuthFailed", "HostBatchError", "HostCommandError", "HostError",
    "HostFileNotFound", "HostKeyRejected", "HostPathError", "HostPermissionError",
    "HostTimeout", "HostUnreachable", "RunResult", "Script", "HostOutcome", "fan_out",
    "HostSpec", "Inventory", "SSHSettings", "default_inventory", "load_inventory",
    "load_inventory_file", "LocalHost",
]
