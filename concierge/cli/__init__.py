"""The `concierge` command line; each module adds its commands to `main`."""

from concierge.cli import articles as _articles  # noqa: F401 - registers `concierge articles`
from concierge.cli import jobs as _jobs  # noqa: F401 - registers `concierge jobs`
from concierge.cli import match as _match  # noqa: F401 - registers `concierge match`
from concierge.cli import money as _money  # noqa: F401 - registers `concierge ledger` and `payments`
from concierge.cli import operators as _operators  # noqa: F401 - registers `concierge operators`
from concierge.cli import rooms as _rooms  # noqa: F401 - registers `concierge rooms`
from concierge.cli import safety as _safety  # noqa: F401 - registers `concierge flags`, `reports`, `people`
from concierge.cli.commands import main

__all__ = ["main"]
