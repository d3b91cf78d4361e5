"""Face anonymization engines, registered by name. See :mod:`anonymizer.engines.base` for the contract."""
