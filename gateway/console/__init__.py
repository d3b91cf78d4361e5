"""The admin's web console: server-rendered pages over :mod:`gateway.ops.admin` (see ``app.py``)."""
