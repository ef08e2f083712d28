"""The rule list the pack judges: every id in ``REQUIREMENTS.md`` (parsed at build
time when the file is found) merged with the copy shipped in ``rules.yaml``, which
adds the Chinese text (an installed opskit has no ``shared/`` folder)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib import resources

import yaml

ENV = "OPSKIT_REQUIREMENTS"
_ROW = re.compile(r"^\|\s*(R-[A-Z]+-\d+)\s*\|(.*)\|([^|]*)\|\s*$")


@dataclass
class Rule:
    id: str
    en: str
    zh: str
    source: str
    zh_terms: str = ""

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def shipped() -> tuple[dict[str, Rule], dict[str, str]]:
    """(rules by id, source documents) from the packaged rules.yaml."""
    text = (resources.files("opskit.evidence") / "rules.yaml").read_text("utf-8")
    data = yaml.safe_load(text)
    rules = {rid: Rule(rid, r["en"], r["zh"], r["source"], r.get("zh_terms", ""))
             for rid, r in data["rules"].items()}
    return rules, dict(data.get("sources") or {})


def requirements_file() -> str | None:
    """$OPSKIT_REQUIREMENTS, else ``../shared/REQUIREMENTS.md`` beside a checkout."""
    env = os.environ.get(ENV)
    if env:
        return env
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.path.join(os.path.dirname(repo), "shared", "REQUIREMENTS.md")
    return path if os.path.exists(path) else None


def parse_requirements(text: str) -> list[tuple[str, str, str]]:
    """(id, English text, source) of every table row of REQUIREMENTS.md."""
    found = []
    for line in text.splitlines():
        match = _ROW.match(line.strip())
        if match:
            found.append((match.group(1), match.group(2).strip(), match.group(3).strip()))
    return found


def load_rules() -> tuple[list[Rule], dict]:
    """Every rule, in REQUIREMENTS.md order when the file is found; and where the
    list came from (file path and counts), for the manifest."""
    rules, sources = shipped()
    path = requirements_file()
    origin = {"file": None, "shipped": len(rules), "sources": sources}
    if not path:
        return list(rules.values()), origin
    try:
        with open(path, encoding="utf-8") as fh:
            rows = parse_requirements(fh.read())
    except OSError:
        return list(rules.values()), origin
    merged = []
    for rid, en, source in rows:
        known = rules.pop(rid, None)
        zh = known.zh if known else ""
        terms = known.zh_terms if known else ""
        merged.append(Rule(rid, _plain(en), zh, source, terms))
    merged.extend(rules.values())          # shipped ids the file no longer lists
    origin.update(file=os.path.abspath(path), parsed=len(rows))
    return merged, origin


def _plain(text: str) -> str:
    """Markdown emphasis off: the pack shows plain text."""
    return text.replace("**", "")
