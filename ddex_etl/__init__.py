"""ddex-etl: turn a PostgreSQL music catalog into schema-valid DDEX ERN deliveries."""
from __future__ import annotations

__version__ = "0.1.0"
