"""Session fixtures; the tokenizers themselves live in families.py (a module of its own, so
test modules can import it without clashing with other conftest.py files)."""

from families import real_tokenizers, trained  # noqa: F401  (fixtures)
