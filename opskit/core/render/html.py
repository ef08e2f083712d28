"""The 'html' format: one self-contained page (inline CSS, no scripts, no
external resources) rendered by Jinja2 with autoescape on.

A Result names its page in ``template`` ("perms/report.html" is
opskit/perms/templates/report.html); every page extends core's base.html
(summary first). Without a template the generic result.html shows the
title, summary, messages and tables. Every value printed is escaped, and
control and bidi-override characters are shown as escapes."""
from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from opskit.core.output import Result, cell_text, to_jsonable, visible


def _finalize(value: Any) -> Any:
    # called for every cell printed (28,000 in a 10,000-person perms report): plain
    # ASCII text, the common case, needs neither the Markup check nor cell_text
    if type(value) is str and value.isascii():
        return visible(value)
    if isinstance(value, _markup()):   # already escaped by a filter
        return value
    return visible(cell_text(value))


@functools.lru_cache(maxsize=None)
def _markup() -> type:
    from markupsafe import Markup     # with Jinja2: imported only when HTML is rendered
    return Markup


def json_script(value: Any) -> Any:
    """``value`` as JSON that is safe inside <script type="application/json">:
    <, > and & as \\u escapes, so no text in it can close the element."""
    from markupsafe import Markup
    text = json.dumps(to_jsonable(value), ensure_ascii=False)
    return Markup(text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e"))


@functools.lru_cache(maxsize=None)
def environment():
    """The Jinja2 environment (built once; Jinja2 is imported only for HTML)."""
    import jinja2

    class PackageTemplates(jinja2.BaseLoader):
        """'base.html' -> opskit/core/templates/base.html;
        'perms/report.html' -> opskit/perms/templates/report.html."""

        def get_source(self, environment, template):
            package, _, name = template.rpartition("/")
            if "/" in package or not name or name.startswith("."):
                raise jinja2.TemplateNotFound(template)
            try:
                text = (resources.files(f"opskit.{package or 'core'}") / "templates" / name
                        ).read_text("utf-8")
            except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
                raise jinja2.TemplateNotFound(template) from None
            return text, None, lambda: True

    env = jinja2.Environment(loader=PackageTemplates(), autoescape=True, finalize=_finalize,
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters["json_script"] = json_script
    return env


def render(result: Result) -> str:
    """``result`` as an HTML page."""
    page = environment().get_template(result.template or "result.html")
    return page.render(result=result, data=result.data, **result.context).rstrip("\n") + "\n"
