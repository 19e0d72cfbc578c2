"""Integration tests share the session fixtures of tests/conftest.py."""

from tests.conftest import DEMO_AS_OF

__all__ = ["DEMO_AS_OF"]
