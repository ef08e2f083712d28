"""`opskit hosts`: the inventory, reachability and SSH host-key trust."""
from __future__ import annotations

import getpass
import sys
from dataclasses import asdict

import click

from opskit.core.errors import EXIT_OPERATIONAL, UsageError
from opskit.core.output import Result, Table

from .app import App, OpskitGroup, output_options, pass_app


@click.group("hosts", cls=OpskitGroup)
def group() -> None:
    """Hosts: the inventory, reachability and SSH host-key checks.

    \b
    The inventory is the file named by 'inventory:' in the config, else
    inventory.yaml beside the config file, else just 'localhost'.
    See configs/inventory.yaml and docs/hosts.md.
    """


def _split(values: tuple[str, ...]) -> list[str] | None:
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    return names or None


def _inventory(app: App):
    from opskit.hosts.inventory import SSHSettings, load_inventory
    return load_inventory(app.config), SSHSettings.from_config(app.config)


@group.command("list")
@click.option("--group", "group_name", metavar="GROUP", help="Only the members of GROUP.")
@output_options()
@pass_app
def list_cmd(app: App, group_name: str | None) -> None:
    """List the hosts in the inventory, their address and groups."""
    inventory, _ = _inventory(app)
    specs = inventory.select(None, group_name)
    rows = []
    for spec in specs:
        row = spec.as_dict()
        row["user"] = None if spec.is_local else (spec.user or getpass.getuser())
        rows.append(row)
    source = inventory.source or "embedded default (no inventory file)"
    app.emit(Result(
        data={"inventory": inventory.source, "hosts": rows,
              "groups": {g: list(m) for g, m in inventory.groups.items()}},
        tables=[Table(["name", "endpoint", "user", "groups"], rows,
                      headers={"name": "HOST", "endpoint": "ADDRESS"})],
        messages=[f"{len(rows)} host(s) from {source}"],
        summary=f"listed {len(rows)} host(s)"))


@group.command("ping")
@click.option("--hosts", "host_names", metavar="A,B", multiple=True,
              help="Only these hosts (comma-separated; repeatable).")
@click.option("--group", "group_name", metavar="GROUP", help="Only the members of GROUP.")
@click.option("--timeout", type=click.FloatRange(min=0.1), metavar="SECONDS",
              help="Per-host limit. Default: ssh.connect_timeout + 10.")
@output_options()
@pass_app
def ping_cmd(app: App, host_names: tuple[str, ...], group_name: str | None,
             timeout: float | None) -> None:
    """Connect to hosts and run 'uname -n'; one row per host.

    Exit code 3 when any host failed (unreachable, host key rejected,
    authentication failed, timeout).
    """
    from opskit.hosts.ping import ping

    inventory, settings = _inventory(app)
    specs = inventory.select(_split(host_names), group_name)
    rows = [asdict(row) for row in ping(specs, settings, timeout)]
    failed = [r for r in rows if not r["ok"]]
    hints = []
    for row in failed:
        if row["hint"] and f"hint: {row['hint']}" not in hints:
            hints.append(f"hint: {row['hint']}")
    failed_names = ", ".join(r["host"] for r in failed)
    summary = (f"ping: {len(rows) - len(failed)} of {len(rows)} host(s) ok"
               + (f"; failed: {failed_names}" if failed else ""))
    app.audit_details["failed_hosts"] = [r["host"] for r in failed]
    result = Result(
        data={"hosts": rows, "ok": len(rows) - len(failed), "failed": len(failed)},
        tables=[Table(["host", "address", "status", "latency_ms", "detail"], rows,
                      headers={"latency_ms": "LATENCY MS"})],
        messages=[summary, *hints], summary=summary)
    if failed:
        result.exit_code = EXIT_OPERATIONAL
    app.emit(result)


@group.command("trust")
@click.argument("host")
@click.option("--fingerprint", metavar="SHA256:...",
              help="Record the key only if it has this fingerprint (obtained out of band).")
@click.option("--yes", "-y", "assume_yes", is_flag=True,
              help="Record without asking (you checked the fingerprint another way).")
@output_options(tabular=False)
@pass_app
def trust_cmd(app: App, host: str, fingerprint: str | None, assume_yes: bool) -> None:
    """Fetch HOST's SSH host key, show its fingerprint, and record it in known_hosts.

    A key that differs from one already recorded is never replaced (exit 3):
    remove the old entry with ssh-keygen -R after checking why it changed.
    """
    from opskit.hosts.base import HostKeyRejected
    from opskit.hosts.trust import record_host_key, scan_host_key

    inventory, settings = _inventory(app)
    scan = scan_host_key(inventory.host(host), settings)
    app.audit_details.update(fingerprint=scan.fingerprint, known_hosts=scan.known_hosts)
    where = f"{scan.host} ({scan.key_name})"
    if scan.state == "changed":
        raise HostKeyRejected(
            f"{where}: HOST KEY CHANGED: {scan.known_hosts} records {', '.join(scan.recorded)} "
            f"but the host offers {scan.key_type} key {scan.fingerprint}; not recording it",
            host=scan.host, fingerprint=scan.fingerprint, changed=True,
            hint=f"if the change is expected, verify the new fingerprint, run ssh-keygen -R "
                 f"'{scan.key_name}' -f {scan.known_hosts} and trust it again")
    if scan.state == "unknown":
        if fingerprint:
            if fingerprint.strip() != scan.fingerprint:
                raise HostKeyRejected(
                    f"{where}: the host offers {scan.key_type} key {scan.fingerprint}, not "
                    f"the expected {fingerprint.strip()}; not recording it",
                    host=scan.host, fingerprint=scan.fingerprint)
        elif not assume_yes:
            if not sys.stdin.isatty():
                raise UsageError(f"{where} offers {scan.key_type} key {scan.fingerprint}; "
                                 "not asking without a terminal",
                                 hint="pass --fingerprint SHA256:... (checked on the host) or --yes")
            click.echo(f"{where} offers {scan.key_type} key\n  {scan.fingerprint}\n"
                       f"Compare it with 'ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub' on the "
                       f"host's console.", err=True)
            click.confirm("Trust this key?", default=False, abort=True, err=True)
        record_host_key(scan)
        state, message = "recorded", f"recorded {scan.fingerprint} for {where} in {scan.known_hosts}"
    else:
        state, message = "already trusted", f"{where}: {scan.fingerprint} is already trusted"
    data = {**scan.as_dict(), "state": state}
    app.emit(Result(data=data,
                    tables=[Table(["host", "key_name", "key_type", "fingerprint", "state"],
                                  [data], headers={"key_name": "KNOWN AS"})],
                    messages=[message], summary=message))
