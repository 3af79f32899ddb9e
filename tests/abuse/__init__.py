"""Abuse suite: each test runs one attack from issue 8 against a real gateway process while
well-behaved clients keep messaging; see conftest.py and docs/topics/bounds.md."""
