"""Deprecated: the shared helpers moved to ``tests/support/``. This shim only keeps
``test_torch_parity.py`` (owned by the lead) importing until it switches to ``support``."""

from support.compare import assert_close  # noqa: F401
from support.rules import by_dtype, config_id, optimizer_class  # noqa: F401
