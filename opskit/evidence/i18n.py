"""The pack's language (issue #21 item 6): gettext catalogues read with Babel.
``en`` is the source language; ``zh-CN`` loads locale/zh_CN/LC_MESSAGES/evidence.po
(shipped as package data; compiled in memory, so no build step is needed)."""
from __future__ import annotations

import functools
import gettext
import io
from importlib import resources

from opskit.core.errors import UsageError

LANGS = ("en", "zh-CN")
DOMAIN = "evidence"


@functools.lru_cache(maxsize=None)
def translations(lang: str) -> gettext.NullTranslations:
    """The gettext translations for ``lang`` (en: none needed)."""
    if lang == "en":
        return gettext.NullTranslations()
    if lang not in LANGS:
        raise UsageError(f"--lang {lang}: expected one of {', '.join(LANGS)}")
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po
    locale = lang.replace("-", "_")
    po = resources.files("opskit.evidence") / "locale" / locale / "LC_MESSAGES" / f"{DOMAIN}.po"
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=locale, domain=DOMAIN)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return gettext.GNUTranslations(buf)
