"""The ``vera-gateway`` command: :mod:`gateway.cli.app` (entry point, service commands, command-group
registry) and the command modules it loads (:mod:`gateway.cli.offline`, ...)."""

from gateway.cli.app import main

__all__ = ["main"]
