"""Which snapshots are archives (R-AUD-6): tag, path (not a mere prefix), repository."""
from opskit.archives.marks import Marks

REPO_ID = "ab12cd34ef56" + "0" * 52


def snap(paths=("/srv/claims",), tags=()):
    return {"id": "f" * 64, "paths": list(paths), "tags": list(tags)}


def test_tags_paths_and_repositories_mark_archives():
    marks = Marks(tags=("archive", "legal-hold"), paths=("/srv/archive/",),
                  repositories=("/backup/old",))
    assert marks.reason(snap(tags=["legal-hold"]), "/backup/live", REPO_ID) == "tag legal-hold"
    assert "archives.paths" in marks.reason(snap(["/srv/archive/2019"]), "/backup/live", REPO_ID)
    assert "archives.paths" in marks.reason(snap(["/srv/archive"]), "/backup/live", REPO_ID)
    assert "archives.repositories" in marks.reason(snap(), "/backup/old/", REPO_ID)


def test_ordinary_snapshots_are_not_archives():
    marks = Marks(tags=("archive",), paths=("/srv/archive",), repositories=("ab12cd34ef56",))
    assert marks.reason(snap(["/srv/archived-not"], ["daily"]), "/backup/live", "9" * 64) is None
    assert marks.reason(snap(["/srv"]), "/backup/live", "9" * 64) is None
    # a repository id mark needs 8 hex digits at least: 'ab' must not match everything
    assert Marks(repositories=("ab",)).reason(snap(), "/x", REPO_ID) is None
    assert Marks(repositories=("ab12cd34",)).reason(snap(), "/x", REPO_ID) is not None


def test_archived_lists_only_archives():
    marks = Marks()
    snaps = [snap(tags=["archive"]), snap(tags=["daily"])]
    assert [why for _s, why in marks.archived(snaps, "/r", REPO_ID)] == ["tag archive"]
