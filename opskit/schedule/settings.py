"""Config section ``schedule:`` of opskit.yaml: Scheduler, playbooks and the evidence pack (opskit schedule / playbook / evidence).

opskit.settings assembles the one schema from this and the other sections;
every key here must also be documented in configs/opskit.yaml and
docs/configuration.md (a test checks).
"""
from opskit.core.schema import Key, MapOf, Section, positive  # noqa: F401


SECTION = Section({
    "file": Key(str, None, "The schedule file (jobs and their timing, docs/schedule.md). Default: "
                           "schedule.yaml beside this config file, else "
                           "/etc/opskit/schedule.yaml, else the embedded default schedule."),
    "metrics_dir": Key(str, None, "Directory for Prometheus textfile metrics, one "
                                  "opskit_job_<name>.prom per job (point node_exporter's "
                                  "--collector.textfile.directory here). Default: "
                                  "<state_dir>/schedule/metrics."),
    "log": Key(str, None, "JSON-lines log of the scheduler (one event per line). Default: "
                          "<state_dir>/schedule/schedule.log."),
    "stop_grace": Key(float, 30.0, "Seconds a running job may still take after SIGTERM before "
                                   "the scheduler terminates it.", check=positive),
    "playbook_dir": Key(str, None, "Where 'opskit playbook run NAME' looks for NAME.yaml. "
                                   "Default: playbooks/ beside this config file, else "
                                   "/etc/opskit/playbooks, else the shipped playbooks."),
})
