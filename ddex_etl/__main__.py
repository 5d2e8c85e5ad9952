"""``python -m ddex_etl`` runs the ``etl`` command."""
from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    main()
