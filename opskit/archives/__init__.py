"""Archive control (R-AUD-6): archive -> keep -> use -> destroy.

Snapshots are archives by tag, backed-up path or repository (marks.py,
config ``archives:``); reading one needs an approved access request naming the
snapshot and the purpose, destroying one an approval, and each is registered
(access.py, register.py). docs/archives.md.

CONTRACT (what the CLI calls):
  marks.Marks.from_config(config).reason(snap, location, repo_id)
  access.authorise_read / register_drill / authorise_destroy / record_destruction
"""
