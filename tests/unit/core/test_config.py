"""Config: the documented example, lookup order, error messages, state directory."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from opskit.core import config as config_mod
from opskit.core import state
from opskit.core.config import Config, find_config_file
from opskit.core.errors import EXIT_USAGE, ConfigError
from opskit.core.schema import Key, MapOf, Section, defaults, walk_keys
from opskit.core.yamlfile import load_yaml
from opskit.settings import SCHEMA, load_config

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "configs" / "opskit.yaml"


# --- the example config documents every key -------------------------------------

def _present(data, parts: list[str]) -> bool:
    """Is dotted path ``parts`` in ``data``? ``<name>`` (a MapOf entry) matches any name."""
    if not parts:
        return True
    if not isinstance(data, dict):
        return False
    head, rest = parts[0], parts[1:]
    if head == "<name>":
        return bool(data) and any(_present(v, rest) for v in data.values())
    return head in data and _present(data[head], rest)


def undocumented_keys(schema, example_path: Path) -> list[str]:
    """Schema keys missing from the example file (as real YAML keys, not just text)."""
    doc = load_yaml(example_path)
    return [name for name, _key in walk_keys(schema) if not _present(doc.data, name.split("."))]


def _leaf_paths(schema, data, path=()):
    """(path tuple, Key) for every leaf actually written in ``data``; MapOf entries expanded."""
    if isinstance(schema, Section):
        for name, child in schema.keys.items():
            if isinstance(data, dict) and name in data:
                yield from _leaf_paths(child, data[name], path + (name,))
    elif isinstance(schema, MapOf):
        for name, value in (data or {}).items():
            yield from _leaf_paths(schema.value, value, path + (name,))
    else:
        yield path, schema


def test_every_schema_key_is_in_the_example_config():
    missing = undocumented_keys(SCHEMA, EXAMPLE)
    assert not missing, (f"configs/opskit.yaml does not document {', '.join(missing)}; "
                         "add each key with a comment and its default value")


def test_every_schema_key_is_in_the_configuration_guide():
    guide = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = [name for name, _key in walk_keys(SCHEMA) if f"`{name}`" not in guide]
    assert not missing, f"docs/configuration.md does not mention {', '.join(missing)}"


def test_the_drift_check_catches_a_new_key():
    grown = Section({**SCHEMA.keys, "brand_new": Key(int, 1, "A key nobody documented."),
                     "ssh": Section({**SCHEMA.keys["ssh"].keys,
                                     "new_nested": Key(str, None, "Also undocumented.")})})
    assert undocumented_keys(grown, EXAMPLE) == ["ssh.new_nested", "brand_new"]


def test_the_drift_check_understands_named_maps(tmp_path):
    schema = Section({"sites": MapOf(Section({"url": Key(str, None, "Where.")}))})
    empty = tmp_path / "empty.yaml"
    empty.write_text("sites: {}\n")
    assert undocumented_keys(schema, empty) == ["sites.<name>.url"]
    full = tmp_path / "full.yaml"
    full.write_text("sites:\n  dr:\n    url: x\n")
    assert undocumented_keys(schema, full) == []


def test_every_example_key_has_a_comment_above_it():
    doc = load_yaml(EXAMPLE)
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    uncommented = []
    for path, _key in _leaf_paths(SCHEMA, doc.data):
        number = doc.lines[path]                       # 1-based line of the key
        above = lines[number - 2].strip() if number >= 2 else ""
        if not above.startswith("#"):
            uncommented.append(".".join(map(str, path)))
    assert not uncommented, f"keys without a comment line above them: {uncommented}"


def test_example_shows_the_default_values():
    doc = load_yaml(EXAMPLE)
    wrong = {}
    for path, key in _leaf_paths(SCHEMA, doc.data):
        if any(isinstance(p, str) and p.startswith("<") for p in path):
            continue
        node = doc.data
        for part in path:
            node = node[part]
        if node != key.default:
            wrong[".".join(path)] = (node, key.default)
    assert not wrong, f"example values differ from the schema defaults: {wrong}"


def test_example_config_loads_and_equals_the_defaults():
    cfg = load_config(str(EXAMPLE))
    assert cfg.source == str(EXAMPLE)
    assert cfg.data == defaults(SCHEMA)
    assert cfg.get("ssh.host_key_policy") == "reject"
    assert cfg.get("backup.repo") is None
    assert cfg.get("backup.repo", "fallback") == "fallback"


def test_the_example_is_all_utf8_and_safe_yaml():
    EXAMPLE.read_bytes().decode("utf-8")
    assert "!!python" not in EXAMPLE.read_text(encoding="utf-8")


# --- lookup order --------------------------------------------------------------

@pytest.fixture
def three_configs(tmp_path, monkeypatch):
    """An explicit file, an $OPSKIT_CONFIG file and a system file, each naming itself."""
    files = {}
    for name in ("explicit", "env", "system"):
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"operator: {name}\n")
        files[name] = str(path)
    monkeypatch.setattr(config_mod, "SYSTEM_CONFIG", files["system"])
    monkeypatch.setenv("OPSKIT_CONFIG", files["env"])
    return files


def test_lookup_explicit_file_wins(three_configs):
    assert find_config_file(three_configs["explicit"]) == three_configs["explicit"]
    assert load_config(three_configs["explicit"]).get("operator") == "explicit"


def test_lookup_env_var_beats_system_file(three_configs):
    assert find_config_file(None) == three_configs["env"]
    assert load_config().get("operator") == "env"


def test_lookup_system_file_beats_defaults(three_configs, monkeypatch):
    monkeypatch.delenv("OPSKIT_CONFIG")
    assert find_config_file(None) == three_configs["system"]
    cfg = load_config()
    assert cfg.get("operator") == "system"
    assert cfg.source == three_configs["system"]


def test_lookup_falls_back_to_embedded_defaults(tmp_path, monkeypatch):
    monkeypatch.setattr(config_mod, "SYSTEM_CONFIG", str(tmp_path / "absent" / "opskit.yaml"))
    assert find_config_file(None) is None
    cfg = load_config()
    assert cfg.source is None and cfg.doc is None
    assert cfg.data == defaults(SCHEMA)
    assert cfg.get("ssh.concurrency") == 16


def test_empty_env_var_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setattr(config_mod, "SYSTEM_CONFIG", str(tmp_path / "absent.yaml"))
    monkeypatch.setenv("OPSKIT_CONFIG", "")
    assert find_config_file(None) is None


def test_named_file_that_is_missing_is_an_error_not_a_fallback(tmp_path, monkeypatch):
    system = tmp_path / "system.yaml"
    system.write_text("operator: system\n")
    monkeypatch.setattr(config_mod, "SYSTEM_CONFIG", str(system))
    missing = str(tmp_path / "nope.yaml")
    for explicit, env in ((missing, None), (None, missing)):
        if env:
            monkeypatch.setenv("OPSKIT_CONFIG", env)
        with pytest.raises(ConfigError) as err:
            load_config(explicit)
        assert missing in str(err.value) and "not found" in str(err.value)
        assert err.value.exit_code == EXIT_USAGE


def test_files_are_not_merged(three_configs, tmp_path):
    """The first file found is the whole config; others are not layered under it."""
    Path(three_configs["system"]).write_text("operator: system\nssh:\n  concurrency: 4\n")
    cfg = load_config(three_configs["explicit"])
    assert cfg.get("ssh.concurrency") == 16


def test_empty_file_means_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing set yet\n")
    cfg = load_config(str(path))
    assert cfg.data == defaults(SCHEMA)
    assert cfg.source == str(path)


def test_partial_file_keeps_other_defaults(tmp_path):
    path = tmp_path / "partial.yaml"
    path.write_text("backup:\n  paths: [/srv/data]\n  compression_level: 9\n")
    cfg = load_config(str(path))
    assert cfg.get("backup.paths") == ["/srv/data"]
    assert cfg.get("backup.compression_level") == 9
    assert cfg.get("backup.pack_size_mib") == 16
    assert cfg.get("ssh.host_key_policy") == "reject"


def test_int_is_accepted_for_float_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("ssh:\n  connect_timeout: 5\n")
    assert load_config(str(path)).get("ssh.connect_timeout") == 5


def test_relative_paths_resolve_beside_the_config_file(tmp_path):
    path = tmp_path / "etc" / "opskit.yaml"
    path.parent.mkdir()
    path.write_text("audit:\n  path: logs/audit.log\n")
    cfg = load_config(str(path))
    assert cfg.relative_path(cfg.get("audit.path")) == str(tmp_path / "etc" / "logs" / "audit.log")
    assert cfg.relative_path("/abs/x") == "/abs/x"
    assert Config(defaults(SCHEMA)).relative_path("rel/x") == "rel/x"


# --- files the settings point at: Config.locate ---------------------------------

@pytest.fixture
def places(tmp_path, monkeypatch):
    """A config dir, an /etc/opskit stand-in and a shipped folder, all empty at first."""
    etc, system, shipped = tmp_path / "etc", tmp_path / "system", tmp_path / "checkout"
    for folder in (etc, system, shipped / "configs"):
        folder.mkdir(parents=True)
    (etc / "opskit.yaml").write_text("operator: x\n")
    monkeypatch.setattr(config_mod, "SYSTEM_DIR", str(system))
    monkeypatch.setattr(config_mod, "shipped_path", lambda *parts: str(shipped.joinpath(*parts)))
    return etc, system, shipped


def _where(cfg, key="inventory", name="thing.yaml", **kw):
    found = cfg.locate(key, name, **kw)
    return None if found is None else (found.path, found.origin)


def test_locate_order_beside_then_system_then_shipped(places):
    etc, system, shipped = places
    cfg = load_config(str(etc / "opskit.yaml"))
    assert _where(cfg, shipped=("configs", "thing.yaml")) is None      # nothing exists yet
    (shipped / "configs" / "thing.yaml").write_text("x")
    assert _where(cfg, shipped=("configs", "thing.yaml")) == (
        str(shipped / "configs" / "thing.yaml"), "shipped")
    assert _where(cfg) is None                                 # no shipped copy asked for
    (system / "thing.yaml").write_text("x")
    assert _where(cfg, shipped=("configs", "thing.yaml")) == (str(system / "thing.yaml"), "system")
    assert _where(cfg, system=False) is None                   # e.g. the inventory
    (etc / "thing.yaml").write_text("x")
    assert _where(cfg) == (str(etc / "thing.yaml"), "beside")


def test_locate_returns_the_setting_as_is_even_when_missing(places):
    etc, system, _shipped = places
    (etc / "thing.yaml").write_text("x")
    (system / "thing.yaml").write_text("x")
    (etc / "opskit.yaml").write_text("inventory: sub/absent.yaml\n")
    cfg = load_config(str(etc / "opskit.yaml"))
    assert _where(cfg) == (str(etc / "sub" / "absent.yaml"), "setting")
    assert _where(cfg, required=True) == (str(etc / "sub" / "absent.yaml"), "setting")


def test_locate_without_a_config_file_skips_beside(places, monkeypatch):
    etc, system, _shipped = places
    (etc / "thing.yaml").write_text("x")
    monkeypatch.chdir(etc)                     # a relative "beside" must not sneak in
    assert _where(Config({})) is None
    (system / "thing.yaml").write_text("x")
    assert _where(Config({})) == (str(system / "thing.yaml"), "system")


def test_locate_a_directory_ignores_a_file_of_that_name(places):
    etc, system, _shipped = places
    (etc / "things").write_text("a file, not a folder")
    (system / "things").mkdir()
    cfg = load_config(str(etc / "opskit.yaml"))
    assert _where(cfg, name="things") == (str(etc / "things"), "beside")
    assert _where(cfg, name="things", is_dir=True) == (str(system / "things"), "system")


def test_locate_required_names_every_place_and_the_key(places):
    etc, system, _shipped = places
    cfg = load_config(str(etc / "opskit.yaml"))
    with pytest.raises(ConfigError) as err:
        cfg.locate("accounts.roster", "roster.yaml", required=True)
    assert err.value.exit_code == EXIT_USAGE
    assert str(err.value) == (f"no roster.yaml found (looked at {etc / 'roster.yaml'}, "
                              f"{system / 'roster.yaml'})")
    assert err.value.hint == "set 'accounts.roster' in opskit.yaml"
    with pytest.raises(ConfigError) as err:
        cfg.locate("accounts.roster", "roster.yaml", required=True, hint="see docs/roster.md")
    assert err.value.hint == "see docs/roster.md"


def test_search_path_keeps_system_and_shipped_after_a_setting(places):
    etc, system, shipped = places
    (etc / "opskit.yaml").write_text("schedule:\n  playbook_dir: books\n")
    cfg = load_config(str(etc / "opskit.yaml"))
    assert cfg.search_path("schedule.playbook_dir", "playbooks", shipped=("playbooks",)) == [
        config_mod.Located(str(etc / "books"), "setting"),
        config_mod.Located(str(system / "playbooks"), "system"),
        config_mod.Located(str(shipped / "playbooks"), "shipped")]
    (etc / "opskit.yaml").write_text("operator: x\n")
    cfg = load_config(str(etc / "opskit.yaml"))
    assert [p.origin for p in cfg.search_path("schedule.playbook_dir", "playbooks")] == [
        "beside", "system"]


# --- error messages name file, line and key ------------------------------------

def _error_for(tmp_path, content: bytes | str, name: str = "opskit.yaml") -> ConfigError:
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    exc = err.value
    assert exc.exit_code == EXIT_USAGE
    assert exc.file == str(path)
    assert str(exc).startswith(f"{path}:{exc.line}: "), str(exc)
    return exc


def test_error_malformed_yaml_names_file_and_line(tmp_path):
    exc = _error_for(tmp_path, "operator: alice\nssh:\n  concurrency: [1, 2\nbackup:\n  repo: x\n")
    assert "not valid YAML" in str(exc)
    assert exc.line == 4                # the open '[' is on 3; the parser notices on 4


def test_error_tab_indentation(tmp_path):
    exc = _error_for(tmp_path, "ssh:\n\tconcurrency: 3\n")
    assert exc.line == 2 and "not valid YAML" in str(exc)


def test_error_unknown_key(tmp_path):
    exc = _error_for(tmp_path, "operator: alice\nssh:\n  conccurrency: 3\n")
    assert (exc.line, exc.key) == (3, "ssh.conccurrency")
    assert f"{exc.file}:3: key 'ssh.conccurrency'" in str(exc)
    assert "unknown key" in str(exc) and "concurrency" in str(exc)   # lists what is allowed


def test_error_unknown_top_level_key(tmp_path):
    exc = _error_for(tmp_path, "backups:\n  repo: /x\n")
    assert (exc.line, exc.key) == (1, "backups")
    assert "backup" in str(exc)


def test_error_wrong_type(tmp_path):
    exc = _error_for(tmp_path, "backup:\n  repo: /srv/repo\n  workers: four\n")
    assert (exc.line, exc.key) == (3, "backup.workers")
    assert "expected an integer" in str(exc) and "'four'" in str(exc)


def test_error_yaml_boolean_is_not_an_integer(tmp_path):
    exc = _error_for(tmp_path, "ssh:\n  concurrency: yes\n")
    assert (exc.line, exc.key) == (2, "ssh.concurrency")
    assert "expected an integer" in str(exc)


def test_error_wrong_list_item_type(tmp_path):
    exc = _error_for(tmp_path, "backup:\n  paths:\n    - /srv\n    - 42\n")
    assert (exc.line, exc.key) == (4, "backup.paths[1]")
    assert "42" in str(exc)


def test_error_value_out_of_range(tmp_path):
    exc = _error_for(tmp_path, "ssh:\n  concurrency: 0\n")
    assert (exc.line, exc.key) == (2, "ssh.concurrency")
    assert "at least 1" in str(exc)


@pytest.mark.parametrize("text, line, key, bound", [
    ("backup:\n  repo: /r\n  pack_size_mib: 100000000000000000000000\n", 3,
     "backup.pack_size_mib", "at most 128"),
    ("backup:\n  pack_size_mib: 129\n", 2, "backup.pack_size_mib", "at most 128"),
    ("backup:\n  chunk_avg_kib: 65536\n", 2, "backup.chunk_avg_kib", "at most 8192"),
    ("backup:\n  compression_level: 23\n", 2, "backup.compression_level", "at most 22"),
    ("ssh:\n  concurrency: 100000\n", 2, "ssh.concurrency", "at most 256"),
    ("sites:\n  dr:\n    url: s3://b/p\n    workers: 65\n", 4, "sites.dr.workers", "at most 64"),
])
def test_error_resource_setting_over_its_bound(tmp_path, text, line, key, bound):
    """#28 item 2: every resource setting has an upper bound, named with file, line, key."""
    exc = _error_for(tmp_path, text)
    assert (exc.line, exc.key) == (line, key)
    assert bound in str(exc) and str(exc).startswith(f"{exc.file}:{line}: key '{key}'")


def test_error_backup_workers_over_twice_the_cores(tmp_path):
    """#28 item 2: 'workers: 100000' forked a thousand processes and woke the OOM killer."""
    cores = os.cpu_count() or 1
    exc = _error_for(tmp_path, "backup:\n  workers: 100000\n")
    assert (exc.line, exc.key) == (2, "backup.workers")
    assert f"at most {2 * cores}" in str(exc) and "100000" in str(exc)
    (tmp_path / "opskit.yaml").write_text(f"backup:\n  workers: {2 * cores}\n")
    assert load_config(str(tmp_path / "opskit.yaml")).get("backup.workers") == 2 * cores
    for ok in ("pack_size_mib: 128", "chunk_avg_kib: 8192", "compression_level: 22"):
        (tmp_path / "opskit.yaml").write_text(f"backup:\n  {ok}\n")
        load_config(str(tmp_path / "opskit.yaml"))


def test_error_bad_choice(tmp_path):
    exc = _error_for(tmp_path, "ssh:\n  host_key_policy: accept-all\n")
    assert (exc.line, exc.key) == (2, "ssh.host_key_policy")
    assert "'reject'" in str(exc) and "'accept-new'" in str(exc)


def test_error_section_is_not_a_mapping(tmp_path):
    exc = _error_for(tmp_path, "operator: x\nssh: 3\n")
    assert (exc.line, exc.key) == (2, "ssh")
    assert "mapping" in str(exc)


def test_error_duplicate_key(tmp_path):
    exc = _error_for(tmp_path, "backup:\n  repo: /a\n  paths: []\n  repo: /b\n")
    assert (exc.line, exc.key) == (4, "backup.repo")
    assert "duplicate key 'repo'" in str(exc)


def test_error_non_utf8(tmp_path):
    exc = _error_for(tmp_path, b"operator: alice\nssh:\n  known_hosts: /home/j\xf6rg/kh\n")
    assert exc.line == 3
    assert "UTF-8" in str(exc)


def test_error_unsafe_yaml_tags_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    exc = _error_for(tmp_path, f"operator: !!python/object/apply:os.system ['touch {marker}']\n")
    assert (exc.line, exc.key) == (1, "operator")
    exc = _error_for(tmp_path, "operator: !!python/name:os.system\n")
    assert exc.line == 1
    assert not marker.exists()


def test_semantic_error_names_the_key_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("operator: x\nbackup:\n  repo: /nowhere\n")
    cfg = load_config(str(path))
    err = cfg.error("backup.repo", "repository not found")
    assert str(err) == f"{path}:3: key 'backup.repo': repository not found"
    assert str(Config(defaults(SCHEMA)).error("backup.repo", "nope")) == "key 'backup.repo': nope"


def test_errors_never_include_a_python_traceback_marker(tmp_path):
    exc = _error_for(tmp_path, "ssh: [\n")
    assert "Traceback" not in str(exc) and "yaml." not in str(exc)


# --- state directory -----------------------------------------------------------

def test_state_dir_env_wins_over_config(monkeypatch, tmp_path):
    monkeypatch.setenv("OPSKIT_HOME", str(tmp_path / "home"))
    assert state.resolve_state_dir("/from/config") == str(tmp_path / "home")


def test_state_dir_env_is_made_absolute(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPSKIT_HOME", "rel/home")
    assert state.resolve_state_dir(None) == str(tmp_path / "rel" / "home")


def test_state_dir_from_config_when_no_env(monkeypatch, tmp_path):
    monkeypatch.delenv("OPSKIT_HOME")
    assert state.resolve_state_dir(str(tmp_path / "s")) == str(tmp_path / "s")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert state.resolve_state_dir("~/opskit-state") == str(tmp_path / "opskit-state")


def test_state_dir_default_as_root(monkeypatch):
    monkeypatch.delenv("OPSKIT_HOME")
    monkeypatch.setattr(state.os, "geteuid", lambda: 0)
    assert state.resolve_state_dir(None) == "/var/lib/opskit"


def test_state_dir_default_as_user(monkeypatch, tmp_path):
    monkeypatch.delenv("OPSKIT_HOME")
    monkeypatch.setattr(state.os, "geteuid", lambda: 1000)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert state.resolve_state_dir(None) == str(tmp_path / ".local" / "share" / "opskit")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert state.resolve_state_dir(None) == str(tmp_path / "xdg" / "opskit")


def test_state_dir_is_created_private(tmp_path):
    target = tmp_path / "a" / "state"
    assert state.ensure_private_dir(str(target)) == str(target)
    assert (target.stat().st_mode & 0o777) == 0o700
    state.ensure_private_dir(str(target))          # idempotent


def test_app_uses_config_state_dir_and_audit_path(monkeypatch, tmp_path):
    from opskit.cli.app import App

    monkeypatch.delenv("OPSKIT_HOME")
    path = tmp_path / "opskit.yaml"
    path.write_text(f"state_dir: {tmp_path / 'state'}\n")
    app = App(config_path=str(path))
    assert app.state_dir == str(tmp_path / "state")
    assert os.path.isdir(tmp_path / "state")
    assert app.audit_log_path() == str(tmp_path / "state" / "audit" / "audit.log")
    path.write_text("audit:\n  path: audit.log\n")
    assert App(config_path=str(path)).audit_log_path() == str(tmp_path / "audit.log")


def test_app_loads_config_lazily(tmp_path):
    from opskit.cli.app import App

    bad = tmp_path / "bad.yaml"
    bad.write_text("ssh: [\n")
    app = App(config_path=str(bad))       # constructing it must not read the file
    with pytest.raises(ConfigError):
        app.config


# --- #28 item 4: billion laughs and recursive aliases ---------------------------------
def _laughs(levels: int, width: int = 9) -> str:
    lines = ["operator: x", "l0: &l0 [" + ", ".join(['"lol"'] * width) + "]"]
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


@pytest.fixture
def deadline():
    """Fail (instead of eating memory until killed) when loading takes over 20 s."""
    import signal

    def expired(_sig, _frame):
        raise TimeoutError("still expanding after 20 s")
    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("loader", ["config", "inventory"])
def test_billion_laughs_is_refused_with_file_and_line(tmp_path, loader, deadline):
    path = tmp_path / "laughs.yaml"
    path.write_text(_laughs(9))           # 9**10 strings if expanded
    with pytest.raises(ConfigError) as err:
        if loader == "config":
            load_config(str(path))
        else:
            from opskit.hosts.inventory import load_inventory_file
            load_inventory_file(str(path))
    exc = err.value
    assert exc.exit_code == EXIT_USAGE and exc.file == str(path) and exc.line
    assert "billion laughs" in str(exc)


def test_recursive_alias_is_refused(tmp_path):
    exc = _error_for(tmp_path, "operator: x\nloop: &a [1, *a]\n")
    assert exc.line == 2 and "recursive alias" in str(exc)


def test_ordinary_aliases_and_merge_keys_still_load(tmp_path):
    """The bound must not refuse what real files do: a few levels of aliases, and one
    merge key per host in a 3,000-host inventory."""
    assert parse_yaml_data(_laughs(2)) is not None           # 9**3 strings: fine
    hosts = "\n".join(f"  h{i}:\n    <<: *defaults\n    address: 10.0.{i // 250}.{i % 250}"
                      for i in range(3000))
    text = ("defaults: &defaults\n  user: ops\n  port: 22\n  become: true\n  timeout: 30\n"
            "hosts:\n" + hosts + "\n")
    data = parse_yaml_data(text)
    assert len(data["hosts"]) == 3000 and data["hosts"]["h2999"]["user"] == "ops"


def parse_yaml_data(text: str):
    from opskit.core.yamlfile import parse_yaml
    return parse_yaml(text, "mem.yaml").data
