"""Taxonomy with multilingual labels, message catalogues (i18n), self-help articles, demo catalogue."""
