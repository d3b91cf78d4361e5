"""Face anonymization engines, registered by name. See :mod:`anonymizer.engines.base` for the contract;
:func:`load_engine` is the one way to load one (options merged over the service's defaults)."""

from anonymizer.engines.base import engine_options, load_engine

__all__ = ["engine_options", "load_engine"]
