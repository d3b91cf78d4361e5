"""``python -m gateway.cli ...`` (e.g. under torchrun) runs ``vera-gateway``."""

import sys

from gateway.cli.app import main

sys.exit(main())
