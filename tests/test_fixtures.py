"""The fixtures give each test its own real, empty database."""
from __future__ import annotations

import sqlalchemy as sa


def test_db_url_is_a_fresh_real_postgresql(db_url: str) -> None:
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("select current_database()")).scalar_one().startswith("etl_t_")
        tables = conn.execute(sa.text("select count(*) from pg_tables where schemaname = 'public'")).scalar_one()
        assert tables == 0
    engine.dispose()
