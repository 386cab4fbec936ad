"""The test suite. The emulator harness shared by several modules gets assertion rewriting."""

import pytest

pytest.register_assert_rewrite("tests.support")
