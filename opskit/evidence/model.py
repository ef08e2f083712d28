"""Per-rule verdicts and the registry of evidence sources.

A *source* is one function ``f(ctx) -> list[Judgement]`` registered for the rule
ids it can speak to (``@source("R-BAK-4", ...)``), like the policy catalogue.
Adding evidence (incidents, security events: issue #25) is one more registered
function. A rule's verdict is the worst judgement any of its sources gave:

    not met        evidence shows the rule broken, or a periodic duty missed
    no evidence    nothing shows it either way: no source, an empty ledger or log,
                   only n/a or disabled checks, evidence outside the period
    met            at least one judgement says met and none says worse
    not applicable declared by the site with a reason, or every source had nothing to
                   apply to (no incident in the period, register intact); never met

A rule with no registered source is ``no evidence: not implemented by opskit``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .text import T, join, render

MET, NOT_MET, NO_EVIDENCE, NOT_APPLICABLE = "met", "not met", "no evidence", "not applicable"
VERDICTS = (MET, NOT_MET, NO_EVIDENCE, NOT_APPLICABLE)
_RANK = {MET: 0, NOT_APPLICABLE: 1, NO_EVIDENCE: 2, NOT_MET: 3}
NOT_IMPLEMENTED = "not implemented by opskit"


@dataclass
class Item:
    """One piece of evidence: what it is, and the pack file (with its hash) or the
    stored original it stands for."""

    what: str | T
    file: str | None = None
    sha256: str | None = None
    when: str | None = None

    def as_dict(self, gettext=None) -> dict:
        out = {k: v for k, v in self.__dict__.items() if v is not None}
        out["what"] = render(self.what, gettext)
        return out


@dataclass
class Judgement:
    """What one source says about one rule."""

    rule: str
    verdict: str
    reason: str | T
    source: str = ""
    items: list[Item] = field(default_factory=list)
    periods: dict | None = None          # regularity (periods.Regularity.as_dict())
    implemented: bool = True             # False: the source has no check for this rule
    silent: bool = False                 # nothing to apply to (no incident in the period):
                                         # ignored beside other judgements, else n/a

    def as_dict(self, gettext=None) -> dict:
        """For rules.json (English) or, with ``gettext``, for the page in its language."""
        return {"source": self.source, "verdict": self.verdict,
                "reason": render(self.reason, gettext),
                "evidence": [i.as_dict(gettext) for i in self.items], "periods": self.periods}


@dataclass
class Source:
    name: str
    rules: tuple[str, ...]
    title: str
    func: Callable


SOURCES: dict[str, Source] = {}


def source(name: str, *rules: str, title: str = "") -> Callable:
    """Register ``func(ctx) -> list[Judgement]`` as evidence for ``rules``."""

    def decorator(func: Callable) -> Callable:
        SOURCES[name] = Source(name, tuple(rules), title or name, func)
        return func

    return decorator


def judge(rule: str, verdict: str, reason: str | T, items=(), periods=None) -> Judgement:
    """Shorthand used by the sources (the source name is filled in by the caller)."""
    return Judgement(rule, verdict, reason, items=list(items), periods=periods)


def not_implemented(rule: str, why: str | T) -> Judgement:
    """The source is registered for ``rule`` but has nothing that checks it."""
    return Judgement(rule, NO_EVIDENCE, why, implemented=False)


def worst(judgements: list[Judgement]) -> str:
    """The rule's verdict from its judgements (NO_EVIDENCE when there are none)."""
    if not judgements:
        return NO_EVIDENCE
    return max((j.verdict for j in judgements), key=_RANK.__getitem__)


@dataclass
class RuleVerdict:
    """The pack's answer for one rule."""

    rule: str
    verdict: str
    reason: str | T
    implemented: bool
    judgements: list[Judgement] = field(default_factory=list)
    declared: dict | None = None         # the site's n/a declaration: {reason, refused}

    @property
    def ok(self) -> bool:
        """Counts as fine for the exit code: met, declared n/a, or not opskit's to show."""
        return self.verdict in (MET, NOT_APPLICABLE) or not self.implemented

    def as_dict(self, gettext=None) -> dict:
        """For rules.json (English) or, with ``gettext``, for the page in its language."""
        out = {"rule": self.rule, "verdict": self.verdict,
               "reason": render(self.reason, gettext), "implemented": self.implemented,
               "judgements": [j.as_dict(gettext) for j in self.judgements]}
        if self.declared:
            out["declared_not_applicable"] = dict(self.declared)
        return out


def _from_sources(rule: str, judgements: list[Judgement]) -> RuleVerdict:
    """Fold the judgements of one rule into its verdict and one-line reason."""
    if not any(j.implemented for j in judgements):
        whys = [j.reason for j in judgements if j.reason]
        reason = T("not implemented by opskit ({why})", why=join(whys)) if whys else \
            T("not implemented by opskit")
        return RuleVerdict(rule, NO_EVIDENCE, reason, False, judgements)
    judgements = [j for j in judgements if j.implemented]
    loud = [j for j in judgements if not j.silent]
    if judgements and not loud:
        return RuleVerdict(rule, NOT_APPLICABLE, join(j.reason for j in judgements), True,
                           judgements)
    verdict = worst(loud)
    reasons = [j.reason for j in loud if j.verdict == verdict]
    return RuleVerdict(rule, verdict, join(reasons) if reasons else T(verdict), True,
                       judgements)


def decide(rule: str, judgements: list[Judgement],
           not_applicable: str | None = None) -> RuleVerdict:
    """The rule's verdict from its sources; a site's ``not_applicable`` declaration
    (with its reason) makes it n/a unless a source shows it not met: a declaration
    never hides findings, it is then reported as refused."""
    found = _from_sources(rule, judgements)
    if not not_applicable:
        return found
    if found.verdict == NOT_MET:
        found.declared = {"reason": not_applicable, "refused": True}
        found.reason = join([found.reason, T(
            "the site's declaration 'not applicable ({reason})' is refused: the evidence "
            "shows the rule not met", reason=not_applicable)])
        return found
    return RuleVerdict(rule, NOT_APPLICABLE, T(
        "not applicable ({reason}): declared by the site (evidence.not_applicable)",
        reason=not_applicable), found.implemented, found.judgements,
        {"reason": not_applicable, "refused": False})
