"""Fixtures shared across test folders: the session's two real pushes (tests/support/)."""

from tests.support.production import production  # noqa: F401  (registers the fixture)
