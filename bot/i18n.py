"""Translations of everything a member reads: gettext catalogs (Babel), one translator per language.

Strings are written in English in the code and marked where they are used::

    t = await services.translator(chat_key)        # the group's language (see ``Services.locale_of``)
    t._("Usage: /ask <question>")
    t._("Cancelled reminder #{no}: {text}", no=3, text=rem.text)
    t.ngettext("{n} vote so far", "{n} votes so far", count)   # plural forms of the language; {n} is filled
    t.pgettext("poll", "closed")                    # a context when one English word means two things

A string defined away from where it is shown (a table, a command's description) is marked with ``N_`` so
extraction finds it, and translated when shown: ``t._(REFUSALS[reason])``.

Catalogs live in ``bot/locale/<locale>/LC_MESSAGES/paibot.po`` (package data) and are read at run time with
Babel, compiled in memory once per language (no build step, nothing generated is committed). English is the
source language and needs no catalog. ``make i18n`` extracts the marked strings (``babel.cfg``) into
``bot/locale/paibot.pot`` and merges them into every ``.po``; ``tests/test_i18n.py`` fails while a marked
string has no Chinese translation. See docs/i18n.md.
"""

from __future__ import annotations

import gettext
import io
import re
import string
from collections.abc import Iterable, Sequence
from datetime import datetime
from importlib import resources
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.dates import format_datetime, get_day_names
from babel.lists import format_list
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

DOMAIN = "paibot"
SOURCE_LOCALE = "en"

# Language names people write in settings that Babel's display names do not cover (keys casefolded).
_NAME_ALIASES = {
    "简体中文": "zh", "简体": "zh", "汉语": "zh", "普通话": "zh", "中国话": "zh", "华语": "zh",
    "mandarin": "zh", "simplified chinese": "zh", "chinese (simplified)": "zh", "cn": "zh",
    "英文": "en", "英语": "en",
}


def N_(message: str) -> str:  # noqa: N802 - the gettext convention extraction looks for
    """Mark a string for extraction where it is defined; translate it where it is shown."""
    return message


class Text:
    """A sentence to translate once the reader's language is known: a marked template and its fields
    (e.g. why a file was refused, raised deep in a parser). ``str()`` gives the English (for logs)."""

    __slots__ = ("template", "fields")

    def __init__(self, template: str, /, **fields: object) -> None:
        self.template = template
        self.fields = fields

    def __str__(self) -> str:
        return _fill(self.template, self.fields)

    def __repr__(self) -> str:
        return f"Text({str(self)!r})"


def placeholders(template: str) -> set[str]:
    """The ``{field}`` names of a format string (what a translation must keep)."""
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError:
        return set()


class Translator:
    """Translates into one language. Methods format the translated template with the given fields
    (``str.format``); the fields' values are inserted verbatim, never parsed as templates."""

    def __init__(self, locale: str, translations: gettext.NullTranslations) -> None:
        self.locale = locale
        self._t = translations
        self._babel = Locale.parse(locale)

    @property
    def is_source(self) -> bool:
        return self.locale == SOURCE_LOCALE

    def gettext(self, message: str, /, **fields: object) -> str:
        return _fill(self._t.gettext(message), fields)

    _ = gettext

    def ngettext(self, singular: str, plural: str, n: int, /, **fields: object) -> str:
        return _fill(self._t.ngettext(singular, plural, n), {"n": n, **fields})

    def pgettext(self, context: str, message: str, /, **fields: object) -> str:
        return _fill(self._t.pgettext(context, message), fields)

    def join(self, items: Sequence[str], style: str = "standard") -> str:
        """``["a", "b", "c"]`` -> "a, b, and c" / "a、b和c"."""
        return format_list(list(items), style=style, locale=self._babel) if items else ""

    def render(self, text: Text | str | BaseException) -> str:
        """A ``Text`` (or an exception raised with one) in this language; other values as they are."""
        if isinstance(text, BaseException):
            text = text.args[0] if len(text.args) == 1 and isinstance(text.args[0], Text) else str(text)
        if isinstance(text, Text):
            return self.gettext(text.template, **text.fields)
        return text

    def commas(self, items: Sequence[str]) -> str:
        """``["a (2)", "b (1)"]`` -> "a (2), b (1)" / "a (2)、b (1)": an enumeration without a final "and"."""
        return self.pgettext("list separator", ", ").join(items)

    def weekday(self, index: int) -> str:
        """The name of a weekday, Monday = 0 ("Friday" / "星期五")."""
        return str(get_day_names("wide", locale=self._babel)[index])

    def datetime(self, at: datetime, pattern: str) -> str:
        """Format with a CLDR pattern in this language (``"EEE yyyy-MM-dd HH:mm"`` -> "周五 2026-12-04 15:00")."""
        return format_datetime(at, pattern, tzinfo=at.tzinfo, locale=self._babel)


def _fill(template: str, fields: dict[str, object]) -> str:
    return template.format(**fields) if fields else template


class Catalogs:
    """The shipped catalogs, each read and compiled once, on first use (one instance per ``Services``)."""

    def __init__(self, directory: Path | None = None) -> None:
        self._dir = directory if directory is not None else Path(str(resources.files("bot") / "locale"))
        self._translators: dict[str, Translator] = {}
        self._catalogs: dict[str, Catalog] = {}

    def available(self) -> tuple[str, ...]:
        """The locales with a catalog, the source language first (``("en", "zh_CN")``)."""
        found = sorted(p.parent.parent.name for p in self._dir.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))
        return (SOURCE_LOCALE, *found)

    def catalog(self, locale: str) -> Catalog:
        """The Babel catalog of a locale (for tools and tests; ``translator`` is what code uses)."""
        if locale not in self._catalogs:
            path = self._dir / locale / "LC_MESSAGES" / f"{DOMAIN}.po"
            with path.open("rb") as fh:
                self._catalogs[locale] = read_po(fh, locale=locale, domain=DOMAIN)
        return self._catalogs[locale]

    def translator(self, locale: str) -> Translator:
        if locale not in self._translators:
            if locale == SOURCE_LOCALE or locale not in self.available():
                translations: gettext.NullTranslations = gettext.NullTranslations()
                locale = SOURCE_LOCALE if locale not in self.available() else locale
            else:
                buf = io.BytesIO()
                write_mo(buf, self.catalog(locale))  # fuzzy entries are left out: they are not translated yet
                buf.seek(0)
                translations = gettext.GNUTranslations(buf)
            self._translators[locale] = Translator(locale, translations)
        return self._translators[locale]

    def messages(self, locale: str, suffixes: tuple[str, ...]) -> dict[str, str | list[str]]:
        """The translated messages used in source files whose names end with one of ``suffixes`` (the web
        page's ``.js`` and ``.html``), as ``{msgid: msgstr}``, plural entries as lists; for a browser."""
        if locale not in self.available() or locale == SOURCE_LOCALE:
            return {}
        out: dict[str, str | list[str]] = {}
        for msg in self.catalog(locale):
            if not msg.id or msg.fuzzy or not any(path.endswith(suffixes) for path, _ in msg.locations):
                continue
            key = msg.id[0] if isinstance(msg.id, tuple) else msg.id
            value = list(msg.string) if isinstance(msg.string, tuple) else msg.string
            if value and all(value if isinstance(value, list) else [value]):
                out[key] = value
        return out

    def resolve(self, language: str) -> str | None:
        """The catalog locale for a language as people write it in settings ("中文", "Chinese", "zh-CN",
        "English"); None for "auto", empty or a language without a catalog."""
        wanted = language.strip().casefold()
        if wanted in ("", "auto"):
            return None
        wanted = _NAME_ALIASES.get(wanted, wanted)
        available = self.available()
        parsed = _parse_locale(wanted)
        if parsed is not None:
            return _best_match(parsed, available)
        for code in available:
            loc = Locale.parse(code)
            if wanted in _display_names(loc):
                return code
        return None


def _parse_locale(text: str) -> Locale | None:
    if not re.fullmatch(r"[a-z]{2,3}([_-][a-z0-9]{2,8})*", text):
        return None
    try:
        return Locale.parse(text.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return None


def _best_match(wanted: Locale, available: Iterable[str]) -> str | None:
    """Exact locale first, else the same language (zh_TW -> zh_CN beats English for a Chinese reader)."""
    same_language = None
    for code in available:
        loc = Locale.parse(code)
        if str(loc) == str(wanted):
            return code
        if loc.language == wanted.language and same_language is None:
            same_language = code
    return same_language


def _display_names(loc: Locale) -> set[str]:
    names: set[str] = set()
    for shape in (loc, Locale(loc.language)):
        for where in (SOURCE_LOCALE, str(loc), loc.language):
            name = shape.get_display_name(where)
            if name:
                names.add(name.casefold())
        names.add((shape.english_name or "").casefold())
    return names


# ----------------------------------------------------------------------------- detection

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af]")
_LATIN = re.compile(r"[A-Za-z]")
# Mentions, commands, links and e-mail addresses say nothing about the language people write in. An address
# is matched from the start of its word only: ``\S+@\S+`` tried at every position of a long word without
# an "@" costs time quadratic in its length (1.5 ms for 3,000 letters, on every message).
_NOISE = re.compile(r"[@＠]\S+|(?:^|\s)[/!][\w-]+|https?://\S+|(?<!\S)[^\s@]+@\S+")


def script_language(text: str) -> str | None:
    """The language a message is written in, judged by its script: "zh", "ja", "ko", "en" or None (no
    letters). One Han character carries about as much as a short word, so Han text outweighs three times
    as many Latin letters ("ok 好的" is Chinese, "hello @派" is English). A long message is judged by its
    first 2,000 characters: that is plenty, and it runs on every message."""
    text = _NOISE.sub(" ", text[:2000])
    han, latin = len(_HAN.findall(text)), len(_LATIN.findall(text))
    if _KANA.search(text):
        return "ja"
    if _HANGUL.search(text):
        return "ko"
    if han and han * 3 >= latin:
        return "zh"
    return "en" if latin >= 2 else None


def detect_language(texts: Iterable[str], window: int = 20) -> str | None:
    """The language most of the last ``window`` telling ``texts`` (oldest first; a bare command, a number or
    an emoji tells nothing) are written in; a tie goes to the latest."""
    said = [lang for lang in map(script_language, texts) if lang is not None][-window:]
    votes: dict[str, int] = {}
    last: str | None = None
    for lang in said:
        votes[lang] = votes.get(lang, 0) + 1
        last = lang
    if not votes:
        return None
    top = max(votes.values())
    leaders = [lang for lang, count in votes.items() if count == top]
    return last if last in leaders else leaders[0]


# ----------------------------------------------------------------------------- extraction (make i18n)


def extract_html(fileobj, keywords, comment_tags, options):  # type: ignore[no-untyped-def]
    """A Babel extractor for the web page's HTML (``babel.cfg``): the text of every element marked
    ``data-i18n`` (or the attribute's value when it holds the English template, e.g. ``"Group {number}"``)
    and the attributes named in ``data-i18n-attr`` (``placeholder,title``). The page's script translates
    the same strings the same way."""
    from html.parser import HTMLParser

    found: list[tuple[int, str, str, list[str]]] = []

    class Parser(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.open: list[tuple[str, int, list[str]]] = []  # (tag, line, text collected)

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            a = {k: v or "" for k, v in attrs}
            line = self.getpos()[0]
            for name in filter(None, (x.strip() for x in a.get("data-i18n-attr", "").split(","))):
                if a.get(name):
                    found.append((line, "_", a[name], []))
            if "data-i18n" in a:
                if a["data-i18n"]:
                    found.append((line, "_", a["data-i18n"], []))
                else:
                    self.open.append((tag, line, []))

        def handle_data(self, data: str) -> None:
            for _, _, parts in self.open:
                parts.append(data)

        def handle_endtag(self, tag: str) -> None:
            if self.open and self.open[-1][0] == tag:
                _, line, parts = self.open.pop()
                text = " ".join("".join(parts).split())
                if text:
                    found.append((line, "_", text, []))

    Parser().feed(fileobj.read().decode(options.get("encoding", "utf-8")))
    yield from sorted(found)
