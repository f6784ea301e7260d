"""The HTTP face of conveyor: the REST API (``api.py``) and what it is built from.

Importing this package imports nothing heavy: :mod:`conveyor.web.documents` is
used by workers too (callbacks), without FastAPI.
"""
