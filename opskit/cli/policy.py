"""`opskit policy`: Policy checks: removable media, wireless, routes, firewalls and ports."""
from __future__ import annotations

import click

from . import highrisk
from .app import App, OpskitGroup, output_options, pass_app


@click.group("policy", cls=OpskitGroup)
def group() -> None:
    """Policy checks: removable media, wireless, routes, firewalls and ports (R-MED-2, R-NET-1, R-NET-3, R-NET-5).

    \b
    Policy files: --policy FILE, else policy.dir of the config, else
    policies/ beside the config file, else /etc/opskit/policies, else the
    shipped configs/policies. See docs/policy.md.
    Exit codes: 0 clean | 1 findings | 2 bad policy | 3 unreachable host.
    """


def _split(values: tuple[str, ...]) -> list[str] | None:
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    return names or None


def _profile_option(func):
    return click.option("--profile", "profile", metavar="NAME",
                        help="A named profile instead of the baseline checks, e.g. mlps3 "
                             "(等保三级 host baseline; profiles/NAME.yaml).")(func)


def _select_options(func):
    func = _profile_option(func)
    func = click.option("--policy", "policy_path", metavar="FILE",
                        help="Policy file (or directory of *.yaml) instead of the configured "
                             "ones.")(func)
    func = click.option("--group", "group_name", metavar="GROUP",
                        help="Only the members of GROUP.")(func)
    func = click.option("--hosts", "host_names", metavar="A,B", multiple=True,
                        help="Only these hosts (comma-separated; repeatable).")(func)
    return func


def _run(app: App, host_names, group_name, policy_path, profile=None):
    from opskit.hosts.inventory import SSHSettings, load_inventory
    from opskit.policy.policyfile import load_policy
    from opskit.policy.fleet import check_fleet

    config = app.config
    policy = load_policy(config, policy_path, profile)  # bad policy: exit 2 before any host
    disables = highrisk.policy_disables(app, policy)    # R-SEC-2: unapproved disables run anyway
    inventory = load_inventory(config)
    specs = inventory.select(_split(host_names), group_name)
    settings = SSHSettings.from_config(config)
    return check_fleet(specs, policy, concurrency=settings.concurrency,
                       timeout_per_host=float(config.get("policy.host_timeout")),
                       ssh_settings=settings), disables


def _store(app: App):
    from opskit.policy.store import RunStore
    # kept for the audit window (keep_days) and never under the security records'
    # retention floor (R-AUD-4)
    return RunStore(app.state_dir, keep=int(app.config.get("policy.keep_runs")),
                    keep_days=float(app.config.get("policy.keep_days")),
                    floor_days=int(app.config.get("incidents.event_retention_days")))


def _audit(app: App, report, path: str) -> None:
    # status names as audit keys ('pass' would be taken for a password and redacted)
    names = {"pass": "passed", "fail": "failed", "n/a": "not_applicable", "error": "errors",
             "manual": "manual_review"}
    counts = {names.get(k, k): v for k, v in report.counts().items()}
    app.audit_details.update(
        run_id=report.id, stored=path, policy_files=report.policy_files, counts=counts,
        hosts_with_findings=sorted({h for h, _ in report.findings()}),
        unreachable=[h.host for h in report.hosts if not h.reachable], profile=report.profile)


@group.command("check")
@_select_options
@output_options(formats=("table", "json", "junit", "html"))
@click.option("--verbose", "-v", is_flag=True, help="Also list the evidence of every pass.")
@pass_app
def check_cmd(app: App, host_names, group_name, policy_path, profile, verbose) -> None:
    """Check hosts against the removable-media and network policy.

    One row per host and one column per check (pass / FAIL / n/a / error),
    then every finding with its evidence: the file and line, or the /proc or
    /sys value that decided it. Results are stored for 'policy drift'.
    """
    from opskit.policy.report import check_result

    report, disables = _run(app, host_names, group_name, policy_path, profile)
    path = _store(app).save(report)
    _audit(app, report, path)
    app.emit(highrisk.note_disables(check_result(report, stored=path, verbose=verbose),
                                    disables))


@group.command("drift")
@_select_options
@output_options(tabular=False)
@pass_app
def drift_cmd(app: App, host_names, group_name, policy_path, profile) -> None:
    """Check now and show what changed since the last stored run.

    Exit 1 when anything changed (a new failure, a resolved one, a finding
    added or gone), 0 when nothing did, 3 when a host was unreachable.
    """
    from opskit.policy.report import drift_result
    from opskit.policy.store import drift

    store = _store(app)
    previous = store.latest(profile)
    report, disables = _run(app, host_names, group_name, policy_path, profile)
    path = store.save(report)
    _audit(app, report, path)
    changes = drift(previous, report) if previous else []
    app.audit_details["changes"] = len(changes)
    app.audit_details["previous_run"] = previous.id if previous else None
    result = highrisk.note_disables(drift_result(previous, report, changes), disables)
    _regression_incident(app, result, changes, path)
    app.emit(result)


def _regression_incident(app: App, result, changes, stored: str) -> None:
    """A regression (a new failure or a finding added) opens an incident with the stored
    run attached (#25 item 1); a resolved finding or a status change does not."""
    from .incident import automatic_incident
    worse = [c for c in changes if c.change in ("new failure", "finding added")]
    if worse:
        what = ", ".join(sorted({f"{c.host} {c.check}" for c in worse}))
        automatic_incident(app, result, "policy-regression",
                           f"policy drift: regression on {what}", stored)


@group.command("list")
@click.option("--policy", "policy_path", metavar="FILE",
              help="Policy file (or directory of *.yaml) instead of the configured ones.")
@_profile_option
@output_options(tabular=False)
@pass_app
def list_cmd(app: App, policy_path: str | None, profile: str | None) -> None:
    """List every check: id, rule, severity, title, and which policy file and
    line set each of its settings (the baseline is read first, site files win)."""
    from opskit.policy.policyfile import describe_catalogue, load_policy
    from opskit.policy.report import catalogue_result

    app.audited = False
    policy = load_policy(app.config, policy_path, profile)
    app.emit(catalogue_result(describe_catalogue(policy), policy.files))
