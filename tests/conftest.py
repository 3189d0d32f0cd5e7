"""Session fixtures; the tokenizers themselves live in families.py (a module of its own, so
test modules can import it without clashing with other conftest.py files).

Hypothesis runs derandomized in the suite: every run of `make test` (and CI) draws the same
examples, so a red run is reproducible and never a new random draw that blocks an unrelated
change. Exploration is the fuzzers' job (README, Development): `DSKD_HYPOTHESIS=random` draws
fresh examples in the suite, and `tests/test_oracle_fuzz.py` with `DSKD_FUZZ_SECONDS` always does.
"""

import os

from families import real_tokenizers, trained  # noqa: F401  (fixtures)
from hypothesis import settings

settings.register_profile("suite", derandomize=True, database=None)
settings.register_profile("random")
settings.load_profile("random" if os.environ.get("DSKD_HYPOTHESIS") == "random" else "suite")
