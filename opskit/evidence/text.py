"""Translatable sentences of the pack (issue #21 item 6): a reason is a gettext
message with named placeholders, ``T("{count} snapshots in the period", count=3)``,
kept unrendered until the page is written so that ``--lang zh-CN`` translates the
whole sentence and not only the labels. ``str()`` is the English (source) text:
rules.json, manifest.json and the terminal stay English. Data (dates, hosts, ids,
file names, messages of other tools) goes in the placeholders and is not translated.

Babel finds every message: ``pybabel extract -k T opskit/evidence``.
"""
from __future__ import annotations

from typing import Callable, Iterable

Gettext = Callable[[str], str]


def _same(text: str) -> str:
    return text


class T:
    """One translatable message and its placeholder values (which may be T too)."""

    __slots__ = ("msgid", "params")

    def __init__(self, msgid: str, **params):
        self.msgid = msgid
        self.params = params

    def render(self, gettext: Gettext | None = None) -> str:
        """The text in the language of ``gettext`` (None: English)."""
        gettext = gettext or _same
        values = {k: render(v, gettext) for k, v in self.params.items()}
        return gettext(self.msgid).format(**values) if self.msgid else ""

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        return f"T({self.render()!r})"

    def __contains__(self, part: str) -> bool:
        return part in str(self)

    def __add__(self, other) -> "Joined":
        return Joined("", [self, other])

    def __radd__(self, other) -> "Joined":
        return Joined("", [other, self])


class Joined(T):
    """Several messages shown one after the other with a separator."""

    __slots__ = ("sep", "parts")

    def __init__(self, sep: str, parts: Iterable):
        super().__init__("")
        self.sep, self.parts = sep, [p for p in parts if p != ""]

    def render(self, gettext: Gettext | None = None) -> str:
        return self.sep.join(render(p, gettext) for p in self.parts)


def join(parts: Iterable, sep: str = "; ") -> Joined:
    """``sep.join(parts)`` that stays translatable."""
    return Joined(sep, parts)


def render(value, gettext: Gettext | None = None) -> str:
    """A T (in the language of ``gettext``) or any other value as text."""
    if isinstance(value, T):
        return value.render(gettext)
    return "" if value is None else str(value)
