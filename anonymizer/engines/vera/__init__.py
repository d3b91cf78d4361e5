"""VerA neural engine: dual-latent generator, face parser, (joint) inversion, training, checkpoint I/O.

Importing this package registers the ``vera`` engine with :mod:`anonymizer.engines.base`.
"""

from anonymizer.engines.vera import engine as _engine  # noqa: F401  (registers "vera")
