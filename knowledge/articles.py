"""Self-help articles: the shared library (knowledge/data/articles/<category>.json) and the rules an
article must follow, whoever wrote it (the project, or a business for its own communities).

An article is an id, a category and, per language, a title and a body of concrete steps. The
shared library has every article in all six UI languages; a business may write in fewer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

from knowledge.i18n import LANGUAGES
from knowledge.taxonomy import load_taxonomy

ARTICLE_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
TITLE_CHARS = (3, 120)
# Bodies are measured in characters, so Chinese and Japanese (about one word per two or
# three characters) have a lower floor than the languages that separate words with spaces. The
# ceilings keep an article with its title and question in one Discord message (2,000 characters).
BODY_CHARS = {"zh": (80, 1200), "ja": (100, 1500)}
BODY_CHARS_DEFAULT = (300, 1600)
MAX_ARTICLES_PER_FILE = 200


class ArticleInvalid(ValueError):
    """An article breaks a rule; `problems` names each one."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class ArticleText:
    title: str
    body: str


@dataclass(frozen=True, slots=True)
class Article:
    id: str
    category: str
    texts: Mapping[str, ArticleText]  # language → title and body
    business_id: str | None = None  # None: the shared library

    def text_for(self, *preferred: str | None) -> tuple[str, ArticleText]:
        """The text in the first preferred language it has, else English, else any."""
        for language in (*preferred, "en"):
            if language is not None and language in self.texts:
                return language, self.texts[language]
        language = next(iter(self.texts))
        return language, self.texts[language]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "category": self.category,
            "texts": {lang: {"title": t.title, "body": t.body} for lang, t in self.texts.items()},
        }


def parse_article(raw: object, *, all_languages: bool, business_id: str | None = None) -> Article:
    """Validate one article object; `all_languages` demands every UI language (the shared library)."""
    if not isinstance(raw, dict):
        raise ArticleInvalid(["an article is a JSON object"])
    problems: list[str] = []
    article_id = raw.get("id")
    if not isinstance(article_id, str) or not ARTICLE_ID.match(article_id):
        problems.append("id: 1-64 lower-case letters, digits, '.', '_' or '-'")
    category = raw.get("category")
    if category not in load_taxonomy().ids:
        problems.append(f"category: one of {', '.join(sorted(load_taxonomy().ids))}")
    texts = raw.get("texts")
    parsed: dict[str, ArticleText] = {}
    if not isinstance(texts, dict) or not texts:
        problems.append(f"texts: an object with a title and body per language ({', '.join(LANGUAGES)})")
        texts = {}
    unknown = sorted(lang for lang in texts if lang not in LANGUAGES)
    if unknown:
        problems.append(f"texts: unsupported language {', '.join(map(str, unknown))}")
    missing = [lang for lang in LANGUAGES if lang not in texts] if all_languages else []
    if missing:
        problems.append(f"texts: missing {', '.join(missing)}")
    for language, entry in texts.items():
        if language not in LANGUAGES:
            continue
        title = entry.get("title") if isinstance(entry, dict) else None
        body = entry.get("body") if isinstance(entry, dict) else None
        if not isinstance(title, str) or not TITLE_CHARS[0] <= len(title.strip()) <= TITLE_CHARS[1]:
            problems.append(f"{language}.title: {TITLE_CHARS[0]}-{TITLE_CHARS[1]} characters")
            continue
        low, high = BODY_CHARS.get(language, BODY_CHARS_DEFAULT)
        if not isinstance(body, str) or not low <= len(body.strip()) <= high:
            size = len(body.strip()) if isinstance(body, str) else 0
            problems.append(f"{language}.body: {low}-{high} characters (has {size})")
            continue
        parsed[language] = ArticleText(title.strip(), body.strip())
    if problems:
        raise ArticleInvalid(problems)
    assert isinstance(article_id, str)
    assert isinstance(category, str)
    return Article(article_id, category, parsed, business_id)


def parse_article_file(data: bytes, *, all_languages: bool, business_id: str | None = None) -> list[Article]:
    """A JSON list of articles (or one article); every problem of every article, or the articles."""
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArticleInvalid([f"not JSON: {exc}"]) from exc
    items = raw if isinstance(raw, list) else [raw]
    if not items or len(items) > MAX_ARTICLES_PER_FILE:
        raise ArticleInvalid([f"a file holds 1-{MAX_ARTICLES_PER_FILE} articles"])
    articles, problems, seen = [], [], set()
    for number, item in enumerate(items, 1):
        try:
            article = parse_article(item, all_languages=all_languages, business_id=business_id)
        except ArticleInvalid as exc:
            problems += [f"article {number}: {problem}" for problem in exc.problems]
            continue
        if article.id in seen:
            problems.append(f"article {number}: id {article.id} appears twice")
        seen.add(article.id)
        articles.append(article)
    if problems:
        raise ArticleInvalid(problems)
    return articles


@cache
def load_library() -> tuple[Article, ...]:
    """The shared library, every file validated (a broken article stops the start, loudly)."""
    folder = files("knowledge").joinpath("data/articles")
    articles: list[Article] = []
    for entry in sorted(folder.iterdir(), key=lambda path: path.name):
        if entry.name.endswith(".json"):
            try:
                articles += parse_article_file(entry.read_bytes(), all_languages=True)
            except ArticleInvalid as exc:
                raise ArticleInvalid([f"{entry.name}: {problem}" for problem in exc.problems]) from exc
    ids = [article.id for article in articles]
    duplicates = sorted({article_id for article_id in ids if ids.count(article_id) > 1})
    if duplicates:
        raise ArticleInvalid([f"id used twice in the library: {', '.join(duplicates)}"])
    return tuple(articles)
