"""The dashboard's words: one message catalogue per language (service/dashboard/i18n/), the
same keys and placeholders in each, every key the page uses present, and no user-facing
text written into the page's HTML or JavaScript outside the catalogues (so a new label
added in English only fails here)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[2] / "service" / "dashboard"
CATALOGUES = PAGE / "i18n"
LANGS = ("zh-CN", "en")
SOURCES = sorted((PAGE / "js").glob("*.js"))
HAN = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")
# a literal reads as a sentence when it has two words of letters, or a capitalised word
PROSE = re.compile(r"[A-Za-z]{2,}[,.:;!?…]?\s+[A-Za-z]{2,}|\b[A-Z][a-z]{3,}\b")
# literals that are not for users: identifiers, CSS, fonts, MIME types, developers' console
# messages and errors thrown to be logged (a user sees them only wrapped in a catalogue text)
NOT_PROSE = re.compile(
    r"^(\d+px |#|\.|\[|text/|application/|Bearer |Last-Event-ID|Accept|Content-Type|"
    r"Assets/|Noto |Liberation )")
DEVELOPER_LINE = re.compile(
    r"console\.(error|warn|log)\(|throw new Error\(|new Error\(|errors\.push\(|className = ")
# GeoJSON geometry types are names of the format, not words for users
IDENTIFIERS = {"Point", "LineString", "Polygon", "MultiPolygon"}


def catalogue(lang: str) -> dict[str, str]:
    return json.loads((CATALOGUES / f"{lang}.json").read_text(encoding="utf-8"))


def placeholders(text: str) -> set[str]:
    return set(re.findall(r"\{(\w+)\}", text))


def strip_comments(src: str) -> str:
    src = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
    return "\n".join(re.sub(r"(^|\s)//.*$", "", line) for line in src.splitlines())


def literals(src: str) -> list[tuple[int, str, str]]:
    """(line number, line, text) of each string literal; ${...} of templates dropped."""
    out = []
    for no, line in enumerate(strip_comments(src).splitlines(), 1):
        for m in re.finditer(r'"((?:[^"\\]|\\.)*)"|\'((?:[^\'\\]|\\.)*)\'|`((?:[^`\\]|\\.)*)`',
                             line):
            text = next(g for g in m.groups() if g is not None)
            out.append((no, line, re.sub(r"\$\{[^}]*\}", " ", text)))
    return out


def test_catalogues_have_the_same_keys_and_placeholders():
    zh, en = catalogue("zh-CN"), catalogue("en")
    assert set(zh) == set(en), set(zh) ^ set(en)
    for key in zh:
        assert zh[key].strip() and en[key].strip(), key
        assert placeholders(zh[key]) == placeholders(en[key]), key


def test_the_chinese_catalogue_is_chinese():
    zh = catalogue("zh-CN")
    # keys whose Chinese text has no Han character on purpose: the switch names the other
    # language, and some lines are only numbers and names put together
    latin = {"lang.switch", "time.utc", "job.line", "job.progress"}
    assert {k for k, v in zh.items() if not HAN.search(v)} == latin
    assert "GB/T 33171 拥堵等级" in zh["layer.traffic"]
    assert "GB 3838 水质类别" in zh["layer.water"]


def test_every_key_the_page_uses_is_in_the_catalogues():
    keys = set(catalogue("zh-CN"))
    used: set[str] = set()
    prefixes: set[str] = set()
    for path in [*SOURCES, PAGE / "index.html"]:
        src = path.read_text(encoding="utf-8")
        used |= set(re.findall(r'\bt(?:Or)?\(\s*"([\w.-]+)"', src))
        used |= set(re.findall(r'data-i18n(?:-title)?="([\w.-]+)"', src))
        prefixes |= set(re.findall(r'\bt(?:Or)?\(\s*`([\w.-]+\.)\$\{', src))
        # titles handed to t() by a table of their own (panel.js SOURCES, legend groups)
        used |= set(re.findall(r'\["(panel\.\w+)"', src))
        used |= set(re.findall(r'group\("(legend\.\w+)"', src))
        used |= set(re.findall(r'showRows\("([\w.]+)"', src))
    assert used, "found no key in use: the scan is broken"
    assert used - keys == set(), used - keys
    for prefix in prefixes:
        assert any(k.startswith(prefix) for k in keys), prefix


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_user_facing_text_in_the_javascript(path):
    found = []
    for no, line, text in literals(path.read_text(encoding="utf-8")):
        prose = (PROSE.search(text) and text not in IDENTIFIERS and not NOT_PROSE.match(text)
                 and not DEVELOPER_LINE.search(line))
        if HAN.search(text) or prose:
            found.append((no, text))
    assert found == [], f"{path.name}: text outside the catalogues: {found}"


class _Text(HTMLParser):
    """Text nodes and user-visible attributes of the page, outside script and style."""

    def __init__(self) -> None:
        super().__init__()
        self.skip = 0
        self.texts: list[str] = []
        self.attrs: list[tuple[str, str, str]] = []
        self.stack: list[dict[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("script", "style"):
            self.skip += 1
        for name in ("title", "alt", "placeholder", "aria-label"):
            if a.get(name):
                self.attrs.append((tag, name, a[name]))
        if tag not in ("meta", "link", "input", "br", "img"):
            self.stack.append(a)

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self.skip -= 1
        if tag not in ("meta", "link", "input", "br", "img") and self.stack:
            self.stack.pop()

    def handle_data(self, data):
        if self.skip or not data.strip():
            return
        inside = self.stack[-1] if self.stack else {}
        if "data-i18n" not in inside:
            self.texts.append(data.strip())


def test_no_user_facing_text_in_the_html():
    parser = _Text()
    parser.feed((PAGE / "index.html").read_text(encoding="utf-8"))
    # "×" is the close button's glyph, named by its data-i18n-title
    assert [t for t in parser.texts if t != "×"] == []
    assert parser.attrs == []


def test_the_scan_finds_what_it_must():
    """The scans above fail on an English label, a Chinese one and a literal HTML text."""
    bad_js = 'el.textContent = "No data yet";\nlabel.title = `无数据 ${x}`;\n'
    found = [text for _, line, text in literals(bad_js)
             if HAN.search(text) or (PROSE.search(text) and not DEVELOPER_LINE.search(line))]
    assert len(found) == 2, found
    parser = _Text()
    parser.feed('<section><h2>Layers</h2><button title="Close">x</button></section>')
    assert parser.texts == ["Layers", "x"] and parser.attrs == [("button", "title", "Close")]
