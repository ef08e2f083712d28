"""The 'junit' format: JUnit XML for CI from a Result's suites -- one
testsuite per host, one testcase per check; fail -> <failure>, skip ->
<skipped>, error -> <error>, a pass with evidence -> <system-out>."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter

from opskit.core.output import Case, Result, Suite, visible

_TAGS = {"fail": "failure", "skip": "skipped", "error": "error"}


def _seconds(value: float | None, digits: int = 3) -> str:
    return f"{value or 0.0:.{digits}f}"


def _case(parent: ET.Element, suite: Suite, case: Case) -> None:
    el = ET.SubElement(parent, "testcase", classname=visible(suite.name), name=visible(case.name))
    if case.seconds is not None:
        el.set("time", _seconds(case.seconds, 4))
    tag = _TAGS.get(case.status)
    if tag is None:                     # a pass: its evidence, if any
        if case.detail:
            ET.SubElement(el, "system-out").text = visible(case.detail)
        return
    child = ET.SubElement(el, tag, message=visible(case.message))
    if case.kind and tag != "skipped":
        child.set("type", visible(case.kind))
    if case.detail and tag != "skipped":
        child.text = visible(case.detail)


def render(result: Result) -> str:
    """``result.suites`` as a JUnit XML document."""
    root = ET.Element("testsuites", name=visible(result.title or "opskit"),
                      time=_seconds(sum(s.seconds or 0.0 for s in result.suites)))
    for suite in result.suites:
        counts = Counter(c.status for c in suite.cases)
        el = ET.SubElement(root, "testsuite", name=visible(suite.name),
                           tests=str(max(1, len(suite.cases))), failures=str(counts["fail"]),
                           errors=str(counts["error"]), skipped=str(counts["skip"]),
                           time=_seconds(suite.seconds))
        for case in suite.cases:
            _case(el, suite, case)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
