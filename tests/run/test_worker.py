"""What a worker makes of releases that cannot be built: reject records with what reproduces them."""
from __future__ import annotations

import datetime as dt

from ddex_etl.errors import FieldProblem, ReleaseDataError
from ddex_etl.run.worker import _reject_from, is_takedown

PROBLEM = FieldProblem("tracks[0].isrc", "XX", "not an ISRC", "use 12 characters")


def test_an_extract_reject_keeps_the_problems_and_the_rows() -> None:
    err = ReleaseDataError(5, [PROBLEM])
    err.rows = [{"release_id": 5, "isrc": "XX", "released": dt.date(2020, 1, 2)}]  # type: ignore[attr-defined]
    rec = _reject_from(err, "extract")
    assert (rec.release_id, rec.stage, rec.error_kind, rec.retryable) == (5, "extract", "ReleaseDataError", False)
    assert rec.input == {
        "problems": [{"field": "tracks[0].isrc", "value": "'XX'", "problem": "not an ISRC", "fix": "use 12 characters"}],
        "rows": [{"release_id": 5, "isrc": "XX", "released": dt.date(2020, 1, 2)}],
    }


def test_a_pair_from_extract_names_its_release() -> None:
    rec = _reject_from((8, ValueError("bad row")), "extract")
    assert (rec.release_id, rec.error_kind, rec.message, rec.input) == (8, "ValueError", "bad row", None)


class _Deal:
    def __init__(self, end: dt.date | None) -> None:
        self.end_date = end


class _Release:
    def __init__(self, deals: tuple[_Deal, ...], deleted: bool = False) -> None:
        self.deals = deals
        self.deleted_at = dt.datetime(2026, 1, 1) if deleted else None


CUT = dt.date(2026, 6, 1)
TAKEDOWN_CASES = [
    (_Release((), deleted=True), CUT, True),
    (_Release((_Deal(dt.date(2026, 1, 1)),)), CUT, True),
    (_Release((_Deal(dt.date(2026, 1, 1)), _Deal(None))), CUT, False),
    (_Release((_Deal(dt.date(2026, 1, 1)),)), None, False),
    (_Release(()), CUT, False),
]


def test_takedowns_are_deleted_releases_or_releases_whose_deals_all_ended() -> None:
    assert [is_takedown(r, cut) for r, cut, _ in TAKEDOWN_CASES] == [want for _, _, want in TAKEDOWN_CASES]
