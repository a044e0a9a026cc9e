"""The help categories, with labels, descriptions and example requests in every UI language."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

DEFAULT_LANGUAGE = "en"


@dataclass(frozen=True, slots=True)
class Category:
    id: str
    labels: Mapping[str, str]
    descriptions: Mapping[str, str]
    examples: Mapping[str, tuple[str, ...]]

    def label(self, language: str) -> str:
        return self.labels.get(language) or self.labels[DEFAULT_LANGUAGE]

    def description(self, language: str) -> str:
        return self.descriptions.get(language) or self.descriptions[DEFAULT_LANGUAGE]


@dataclass(frozen=True, slots=True)
class Taxonomy:
    languages: tuple[str, ...]
    categories: tuple[Category, ...]

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(category.id for category in self.categories)

    def get(self, category_id: str) -> Category:
        for category in self.categories:
            if category.id == category_id:
                return category
        raise KeyError(category_id)


@cache
def load_taxonomy() -> Taxonomy:
    raw = json.loads(files("knowledge").joinpath("data/taxonomy.json").read_text("utf-8"))
    return Taxonomy(
        languages=tuple(raw["languages"]),
        categories=tuple(
            Category(
                id=entry["id"],
                labels=dict(entry["labels"]),
                descriptions=dict(entry["description"]),
                examples={lang: tuple(texts) for lang, texts in entry["examples"].items()},
            )
            for entry in raw["categories"]
        ),
    )
