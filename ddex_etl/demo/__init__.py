"""The demo catalog of ``etl seed``: deterministic releases (``seed.py``) and the small real media files they reference (``media.py``)."""
