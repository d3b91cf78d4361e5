"""The ledger: every instance and study job with its state (see :mod:`.models` for the states).

Interim: :mod:`.base` defines the typed interface and :mod:`.models` its records; callers still use the
old class (``ledger_legacy``) until the SQLite backend implementing ``base.Ledger`` lands.
"""

from gateway.core.ledger_legacy import *  # noqa: F403
from gateway.core.ledger_legacy import Ledger

__all__ = ["Ledger"]
