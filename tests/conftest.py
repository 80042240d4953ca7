"""Hypothesis profiles and shared fixtures.

Profiles (select with HYPOTHESIS_PROFILE): "ci" (default, sized to keep the
suite within its time budget on 2 cores), "dev" (quick), "thorough" (long
local runs), "campaign" (10,000 cases per test: the fuzz campaigns of
docs/safety.md). Numba compiles on first call, hence no deadline.
"""

import os

from hypothesis import HealthCheck, settings

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=32, **_common)
settings.register_profile("dev", max_examples=8, **_common)
settings.register_profile("thorough", max_examples=1000, **_common)
settings.register_profile("campaign", max_examples=10_000, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_terminal_summary(terminalreporter):
    """After a fuzz run, how many cases ended in each outcome (tests/fuzzing.py)."""
    from fuzzing import OUTCOMES

    if OUTCOMES:
        terminalreporter.section("fuzz outcomes")
        for campaign, counts in sorted(OUTCOMES.items()):
            total = sum(counts.values())
            parts = ", ".join(f"{name} {n}" for name, n in counts.most_common())
            terminalreporter.write_line(f"{campaign}: {total} cases: {parts}")
