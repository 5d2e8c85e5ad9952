"""The Python batch API: DDEXBuilder.build / build_batch / from_dataframe_batch.

Releases are given the way library users have them: nested dicts (from an
API) and DataFrames read from a CSV export in the extract column contract.
"""
from __future__ import annotations

import copy
import functools
import os
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from ddex_etl import BatchResult, DDEXBuilder
from ddex_etl.api.batch import BatchError, ItemError, backoff_delay, retry
from ddex_etl.demo.seed import ean13
from ddex_etl.ern.validate import validate_bytes
from ddex_etl.errors import ConfigError, ReleaseDataError, TransientError
from ddex_etl.extract.records import release_from_dict
from ddex_etl.models import Party, Release

SENDER = ("PADPIDA2014040101Z", "Example Label Group")
RECIPIENT = {"dpid": "PADPIDA2011072101T", "name": "Example Store"}


def release_dict(n: int, tracks: int = 2) -> dict[str, Any]:
    """A complete, valid release as a nested dict (the shape an API client has)."""
    return {
        "release_id": n,
        "icpn": ean13(f"{100_000_000_000 + n:012d}"),
        "catalog_number": f"CAT-{n:05d}",
        "title": f"Album {n}",
        "release_type": "Album" if tracks > 1 else "Single",
        "label": {"label_id": 7, "name": "Example Records", "dpid": None},
        "genre": "Pop",
        "release_date": "2024-03-01",
        "p_line_year": 2024,
        "p_line_text": "2024 Example Records",
        "c_line_year": 2024,
        "c_line_text": "2024 Example Records",
        "language": "en",
        "cover_image": {"file": f"covers/{n}.jpg", "md5": f"{n:032x}", "width": 3000, "height": 3000, "mime_type": "image/jpeg"},
        "artists": [{"artist_id": 1000 + n % 50, "name": f"Artist {n % 50}", "role": "MainArtist", "sequence": 1}],
        "tracks": [
            {
                "track_id": n * 100 + t,
                "disc_number": 1,
                "track_number": t,
                "isrc": f"USABC24{(n * 100 + t) % 100000:05d}",
                "title": f"Song {t}",
                "duration_seconds": 180 + t,
                "contributors": [{"artist_id": 5000 + t, "name": f"Writer {t}", "role": "Composer", "sequence": 1}],
            }
            for t in range(1, tracks + 1)
        ],
        "deals": [
            {
                "deal_id": n,
                "territories": ["Worldwide"],
                "commercial_model": "SubscriptionModel",
                "use_types": ["Stream"],
                "start_date": "2024-03-01",
            }
        ],
    }


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(d: dict[str, Any]) -> None:
        target: Any = d
        *parents, last = path.replace("]", "").replace("[", ".").split(".")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[int(last) if last.isdigit() else last] = value

    return apply


# (what is wrong, the field the error must name, how to break a good release)
BAD_CASES: list[tuple[str, str, Callable[[dict[str, Any]], None]]] = [
    ("no title", "title", _set("title", "")),
    ("malformed ISRC", "tracks[0].isrc", _set("tracks[0].isrc", "NOT-AN-ISRC")),
    ("malformed ICPN", "icpn", _set("icpn", "12AB")),
    ("unknown commercial model", "deals[0].commercial_model", _set("deals[0].commercial_model", "FreeBeer")),
    ("negative duration", "tracks[1].duration_seconds", _set("tracks[1].duration_seconds", -3)),
    ("no tracks", "tracks", _set("tracks", [])),
    ("unknown release type", "release_type", _set("release_type", "Cassingle")),
]


def batch_with_bad(total: int, every: int) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """``total`` releases, each ``every``-th one broken; returns them and {id: field named}."""
    releases, bad = [], {}
    for n in range(1, total + 1):
        d = release_dict(n)
        if n % every == 0:
            _, field, breaker = BAD_CASES[(n // every) % len(BAD_CASES)]
            breaker(d)
            bad[n] = field
        releases.append(d)
    return releases, bad


@pytest.fixture(scope="module")
def builder() -> Any:
    b = DDEXBuilder(version="4.3", sender=SENDER, recipient=RECIPIENT, workers=2)
    yield b
    b.close()


# --------------------------------------------------------------------------- one release


def test_build_accepts_a_dict_or_a_release_record_and_gives_the_same_valid_text(builder: DDEXBuilder, schema_dir: Path) -> None:
    d = release_dict(1, tracks=3)
    from_dict = builder.build(d)
    from_record = builder.build(release_from_dict(d))
    assert isinstance(from_dict, str) and from_dict.startswith("<?xml")
    assert from_dict == from_record
    assert validate_bytes(from_dict.encode("utf-8"), schema_dir, "4.3") == []


@pytest.mark.parametrize("version", ["4.3", "4.2", "3.8.2"])
def test_each_version_builds_valid_messages(version: str, schema_dir: Path) -> None:
    b = DDEXBuilder(version=version, sender=SENDER, recipient=RECIPIENT)
    result = b.build_batch([release_dict(n) for n in range(1, 6)], parallel=False, validate_each=True, schema_dir=schema_dir)
    assert (len(result.success), result.errors) == (5, [])


def test_build_raises_a_data_error_naming_release_and_field(builder: DDEXBuilder) -> None:
    d = release_dict(42)
    d["tracks"][0]["isrc"] = "bogus"
    with pytest.raises(ReleaseDataError) as info:
        builder.build(d)
    assert info.value.release_id == 42
    assert "tracks[0].isrc" in str(info.value) and "bogus" in str(info.value)


@pytest.mark.parametrize(
    "sender, ok",
    [
        (Party("PADPIDA2014040101Z", "Label"), True),
        (("PADPIDA2014040101Z", "Label"), True),
        ({"dpid": "PADPIDA2014040101Z", "name": "Label"}, True),
        (None, True),  # the demo sender of etl.toml
        (("not-a-dpid", "Label"), False),
        ({"name": "Label"}, False),
        ("PADPIDA2014040101Z", False),
    ],
)
def test_sender_may_be_a_party_a_tuple_or_a_dict(sender: Any, ok: bool) -> None:
    if ok:
        assert DDEXBuilder(sender=sender).sender.dpid.startswith("PADPIDA")
    else:
        with pytest.raises(ConfigError, match="sender"):
            DDEXBuilder(sender=sender)


@pytest.mark.parametrize(
    "kwargs, complaint",
    [
        ({"version": "5.0"}, "version"),
        ({"language": "english please"}, "language"),
        ({"schema_dir": "/no/such/folder"}, "schema_dir"),
        ({"workers": 0}, "workers"),
    ],
)
def test_bad_builder_settings_fail_up_front(kwargs: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        DDEXBuilder(**kwargs)


# --------------------------------------------------------------------------- batches


@pytest.fixture(scope="module")
def thousand() -> tuple[list[dict[str, Any]], dict[int, str]]:
    return batch_with_bad(1000, every=20)  # 5% bad


@pytest.fixture(scope="module")
def thousand_result(builder: DDEXBuilder, thousand: tuple[list[dict[str, Any]], dict[int, str]]) -> BatchResult:
    releases, _ = thousand
    return builder.build_batch(releases, batch_size=50, parallel=True)


def test_thousand_releases_with_five_percent_bad(
    thousand: tuple[list[dict[str, Any]], dict[int, str]], thousand_result: BatchResult, schema_dir: Path
) -> None:
    releases, bad = thousand
    result = thousand_result
    assert result.parallel
    assert (len(result.success), len(result.errors), result.skipped) == (950, 50, 0)
    assert [e.id for e in result.errors] == sorted(bad)
    for err in result.errors:
        field = bad[err.id]
        assert f"release {err.id}" in err.message
        assert field in err.message, err.message
        assert field in err.fields
        assert err.retryable is False
        assert err.data is releases[err.id - 1]  # the input as given, to fix and resubmit
    # Input order is kept, and each success carries its id and checksum.
    assert [s.id for s in result.success] == [n for n in range(1, 1001) if n not in bad]
    assert all(len(s.checksum) == 64 for s in result.success)
    # XSD validation costs ~100x a build; a random sample keeps the suite fast
    # (the ern tests prove validity at scale; the benchmark can validate all).
    for item in random.Random(6).sample(result.success, 50):
        assert validate_bytes(item.xml_bytes, schema_dir, "4.3") == [], item.id
    assert result.stats["failed"] == 50 and result.error_rate == pytest.approx(0.05)


def test_parallel_and_inline_give_the_same_documents(
    builder: DDEXBuilder, thousand: tuple[list[dict[str, Any]], dict[int, str]], thousand_result: BatchResult
) -> None:
    releases, _ = thousand
    inline = builder.build_batch(releases, parallel=False)
    assert not inline.parallel
    assert [(s.id, s.checksum) for s in inline.success] == [(s.id, s.checksum) for s in thousand_result.success]
    assert [(e.id, e.message) for e in inline.errors] == [(e.id, e.message) for e in thousand_result.errors]


@pytest.mark.parametrize("parallel", [True, False])
def test_fail_fast_stops_at_the_first_error(builder: DDEXBuilder, parallel: bool) -> None:
    releases = [release_dict(n) for n in range(1, 301)]
    for n in (37, 38, 200):
        releases[n - 1]["title"] = ""
    result = builder.build_batch(releases, batch_size=10, parallel=parallel, fail_fast=True)
    assert [e.id for e in result.errors] == [37]
    assert [s.id for s in result.success] == list(range(1, 37))
    assert result.stopped_early
    assert result.skipped == 300 - 37
    with pytest.raises(BatchError, match="release 37"):
        result.raise_for_errors()


def test_continue_on_error_false_finishes_the_batch_in_hand_then_stops(builder: DDEXBuilder) -> None:
    releases = [release_dict(n) for n in range(1, 101)]
    releases[24]["title"] = ""  # release 25, in the third batch of 10
    result = builder.build_batch(releases, batch_size=10, parallel=False, continue_on_error=False)
    assert [e.id for e in result.errors] == [25]
    assert [s.id for s in result.success] == [n for n in range(1, 31) if n != 25]
    assert (result.stopped_early, result.skipped) == (True, 70)


def test_items_that_are_not_releases_become_errors(builder: DDEXBuilder) -> None:
    result = builder.build_batch([release_dict(1), 12345, None, release_dict(2)], parallel=False)
    assert [s.id for s in result.success] == [1, 2]
    assert [e.data for e in result.errors] == [12345, None]
    assert all("not a release" in e.message for e in result.errors)


def test_a_generator_input_works_and_is_consumed_once(builder: DDEXBuilder) -> None:
    result = builder.build_batch((release_dict(n) for n in range(1, 121)), batch_size=7)
    assert [s.id for s in result.success] == list(range(1, 121))


# --------------------------------------------------------------------------- retries


class FlakyStore(Exception):
    """A hook's fault that a retry can fix (marked like TransientError)."""

    retryable = True


class StoreRefused(Exception):
    retryable = False


def flaky_check(log_dir: str, fail_times: int, error: type[Exception], xml: bytes) -> None:
    """A validate_each hook that fails ``fail_times`` times per document, counting calls in files."""
    key = str(abs(hash(xml)))
    path = os.path.join(log_dir, key)
    with open(path, "a", encoding="ascii") as f:
        f.write(".")
    with open(path, encoding="ascii") as f:
        calls = len(f.read())
    if calls <= fail_times:
        raise error(f"store busy (call {calls})")


def _attempts(log_dir: Path) -> list[int]:
    return sorted(len(p.read_text()) for p in log_dir.iterdir())


# (error raised by the hook, failures before success, max_retries, built?, attempts per release)
RETRY_CASES = [
    (FlakyStore, 2, 3, True, 3),  # retryable, succeeds on the third attempt
    (FlakyStore, 5, 2, False, 3),  # retryable, retries run out: 1 + 2 attempts
    (TransientError, 1, 1, True, 2),  # the package's own transient error
    (StoreRefused, 1, 3, False, 1),  # not retryable: tried once
    (ValueError, 1, 3, False, 1),  # an ordinary bug is not retried either
]


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("error, fail_times, max_retries, built, attempts", RETRY_CASES)
def test_retries_happen_for_retryable_errors_only(
    builder: DDEXBuilder, tmp_path: Path, parallel: bool,
    error: type[Exception], fail_times: int, max_retries: int, built: bool, attempts: int,
) -> None:
    check = functools.partial(flaky_check, str(tmp_path), fail_times, error)
    releases = [release_dict(n) for n in range(1, 5)]
    result = builder.build_batch(
        releases, parallel=parallel, validate_each=check, max_retries=max_retries, retry_delay=0, batch_size=2
    )
    assert _attempts(tmp_path) == [attempts] * 4
    if built:
        assert (len(result.success), result.errors) == (4, [])
        assert all(s.attempts == attempts for s in result.success)
    else:
        assert len(result.errors) == 4
        assert all(e.retryable == getattr(error, "retryable", False) for e in result.errors)
        assert all(e.attempts == attempts and e.stage == "validate" for e in result.errors)
        assert all(f"release {e.id}" in e.message for e in result.errors)
    assert result.retries == 4 * (attempts - 1)


def test_data_errors_are_never_retried(builder: DDEXBuilder, tmp_path: Path) -> None:
    d = release_dict(1)
    d["icpn"] = "x"
    check = functools.partial(flaky_check, str(tmp_path), 0, FlakyStore)
    result = builder.build_batch([d], parallel=False, validate_each=check, max_retries=5, retry_delay=0)
    assert [(e.id, e.attempts, e.retryable, e.stage) for e in result.errors] == [(1, 1, False, "build")]
    assert list(tmp_path.iterdir()) == []  # never reached the hook


def test_a_hook_may_be_a_closure_even_with_worker_processes(builder: DDEXBuilder) -> None:
    seen: dict[int, int] = {}

    def busy_twice(xml: bytes) -> None:  # local state: runs in this process, never pickled
        key = hash(xml)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] <= 2:
            raise TransientError("store busy")

    result = builder.build_batch([release_dict(n) for n in range(1, 7)], validate_each=busy_twice,
                                 max_retries=2, retry_delay=0, parallel=True, batch_size=2)
    assert (len(result.success), result.retries) == (6, 12)
    assert sorted(seen.values()) == [3] * 6
    refused = builder.build_batch([release_dict(1)], validate_each=lambda xml: ["no cover art"], parallel=True)
    assert [(e.id, e.stage, e.retryable) for e in refused.errors] == [(1, "validate", False)]
    assert "no cover art" in refused.errors[0].message


@pytest.mark.parametrize(
    "attempt, base, low, high",
    [(1, 1.0, 0.5, 1.0), (2, 1.0, 1.0, 2.0), (4, 0.5, 2.0, 4.0), (20, 1.0, 30.0, 60.0), (3, 0.0, 0.0, 0.0)],
)
def test_backoff_grows_exponentially_with_jitter_and_a_cap(attempt: int, base: float, low: float, high: float) -> None:
    delays = [backoff_delay(attempt, base, rng=random.Random(seed)) for seed in range(50)]
    assert all(low <= d <= high for d in delays)


def test_retry_helper_sleeps_between_attempts_and_reraises() -> None:
    sleeps: list[float] = []
    calls = []

    def op() -> str:
        calls.append(1)
        raise FlakyStore("down")

    with pytest.raises(FlakyStore) as info:
        retry(op, max_retries=3, retry_delay=0.1, sleep=sleeps.append)
    assert len(calls) == 4 and len(sleeps) == 3 and getattr(info.value, "attempts") == 4
    assert sleeps[0] < sleeps[2]


def test_validate_each_needs_a_schema_folder(builder: DDEXBuilder) -> None:
    with pytest.raises(ConfigError, match="schema_dir"):
        builder.build_batch([release_dict(1)], validate_each=True)


# --------------------------------------------------------------------------- threads


def test_a_shared_builder_is_safe_from_several_threads() -> None:
    releases = [release_dict(n) for n in range(1, 201)]
    # A fresh builder: its pool is created lazily by whichever thread gets there first.
    builder = DDEXBuilder(sender=SENDER, recipient=RECIPIENT, workers=2)
    expected = {s.id: s.checksum for s in builder.build_batch(releases, parallel=False).success}
    outcomes: dict[int, dict[Any, str]] = {}
    failures: list[BaseException] = []

    def work(k: int) -> None:
        try:
            mine = releases[k::4]
            got = {s.id: s.checksum for s in builder.build_batch(mine, batch_size=9, parallel=k % 2 == 0).success}
            for d in mine[:5]:  # single builds interleaved with the batches of other threads
                got[d["release_id"]] = __import__("hashlib").sha256(builder.build(d).encode()).hexdigest()
            outcomes[k] = got
        except BaseException as exc:  # surfaced below; a thread cannot fail the test itself
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    builder.close()
    assert failures == []
    merged = {k: v for got in outcomes.values() for k, v in got.items()}
    assert merged == expected


def test_a_builder_closes_its_pool_and_starts_a_new_one_when_needed() -> None:
    with DDEXBuilder(workers=2) as b:
        assert len(b.build_batch([release_dict(1), release_dict(2)], batch_size=1).success) == 2
    assert b._pool is None
    assert len(b.build_batch([release_dict(3)]).success) == 1
    b.close()


# --------------------------------------------------------------------------- DataFrames


def test_from_dataframe_batch_groups_rows_and_reports_bad_rows(builder: DDEXBuilder, tmp_path: Path) -> None:
    rows = flat_rows([release_dict(n, tracks=3) for n in range(1, 21)])
    for row in rows:
        if row["release_id"] == 5 and row["track_number"] == 2:
            row["isrc"] = "XX"  # a bad value in one track row of release 5
        if row["release_id"] == 9:
            row["deals"] = "[{not json"  # a broken JSON column
    rows.append({**rows[0], "release_id": None})  # a row that belongs to no release
    frame = pd.DataFrame(rows)
    frame = frame.sample(frac=1, random_state=3)  # rows of a release no longer next to each other
    frame.to_csv(tmp_path / "releases.csv", index=False)

    result = builder.from_dataframe_batch(pd.read_csv(tmp_path / "releases.csv"), batch_size=4)

    assert sorted(s.id for s in result.success) == [n for n in range(1, 21) if n not in (5, 9)]
    by_id = {e.id: e for e in result.errors}
    assert set(by_id) == {5, 9, None}
    assert "isrc" in by_id[5].message and "XX" in by_id[5].message
    assert "deals" in by_id[9].message
    assert "release_id" in by_id[None].message
    assert len(by_id[5].data) == 3  # the release's rows, to inspect and fix
    one = next(s for s in result.success if s.id == 1)
    assert one.xml == builder.build(release_dict(1, tracks=3))  # same document as from the dict


@pytest.fixture()
def catalog_rows(db_url: str) -> tuple[list[str], list[tuple[Any, ...]], pd.DataFrame]:
    """A seeded demo catalog's rows as the extract query returns them, and as a DataFrame."""
    import sqlalchemy as sa

    from ddex_etl.db import make_engine
    from ddex_etl.demo.seed import SQL_DIR, seed_catalog

    engine = make_engine(db_url)
    try:
        seed_catalog(engine, releases=40, seed=6)
        query = sa.text((SQL_DIR / "release_rows.sql").read_text(encoding="utf-8"))
        with engine.connect() as conn:
            ids = list(conn.execute(sa.text("SELECT release_id FROM releases ORDER BY 1")).scalars())
            result = conn.execute(query, {"release_ids": ids})
            columns, rows = list(result.keys()), [tuple(r) for r in result]
            frame = pd.read_sql(query, conn, params={"release_ids": ids})
    finally:
        engine.dispose()
    return columns, rows, frame


def test_a_csv_export_builds_the_same_bytes_as_the_database_rows(
    builder: DDEXBuilder, catalog_rows: tuple[list[str], list[tuple[Any, ...]], pd.DataFrame], tmp_path: Path
) -> None:
    from ddex_etl.extract.records import releases_from_rows

    columns, rows, frame = catalog_rows
    direct = builder.build_batch(list(releases_from_rows(rows, columns)), parallel=False)
    frame.sample(frac=1, random_state=1).to_csv(tmp_path / "releases.csv", index=False)
    # Default read_csv: numbers parsed (ICPNs lose leading zeros), JSON columns as text, NaN for NULL.
    from_csv = builder.from_dataframe_batch(pd.read_csv(tmp_path / "releases.csv"))
    from_sql = builder.from_dataframe_batch(frame, parallel=False)
    assert (len(direct.success), direct.errors) == (40, [])
    expected = {s.id: s.checksum for s in direct.success}
    assert {s.id: s.checksum for s in from_csv.success} == expected and from_csv.errors == []
    assert {s.id: s.checksum for s in from_sql.success} == expected and from_sql.errors == []


@pytest.mark.parametrize("start_method", ["fork", "forkserver", "spawn"])
def test_every_start_method_builds_the_same_documents(builder: DDEXBuilder, start_method: str) -> None:
    releases = [release_dict(n) for n in range(1, 9)]
    expected = [s.checksum for s in builder.build_batch(releases, parallel=False).success]
    with DDEXBuilder(sender=SENDER, recipient=RECIPIENT, workers=2, start_method=start_method) as other:
        assert [s.checksum for s in other.build_batch(releases, batch_size=2).success] == expected


def test_from_dataframe_batch_needs_the_group_column(builder: DDEXBuilder) -> None:
    with pytest.raises(ConfigError, match="group_by"):
        builder.from_dataframe_batch(pd.DataFrame({"id": [1]}))


def flat_rows(releases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Releases as the extract query returns them: one row per track, JSON columns as text."""
    import json

    rows = []
    for d in releases:
        d = copy.deepcopy(d)
        base = {
            "release_id": d["release_id"], "icpn": d["icpn"], "grid": None, "catalog_number": d["catalog_number"],
            "title": d["title"], "version_title": None, "release_type": d["release_type"],
            "label_id": d["label"]["label_id"], "label_name": d["label"]["name"], "label_dpid": None,
            "genre": d["genre"], "subgenre": None, "release_date": d["release_date"], "original_release_date": None,
            "p_line_year": d["p_line_year"], "p_line_text": d["p_line_text"], "c_line_year": d["c_line_year"],
            "c_line_text": d["c_line_text"], "parental_warning": None, "language": d["language"],
            "release_artists": json.dumps(d["artists"]), "deals": json.dumps(d["deals"]),
            "changed_at": None, "deleted_at": None,
            **{f"cover_{k}": v for k, v in d["cover_image"].items()},
        }
        for t in d["tracks"]:
            rows.append({
                **base, "track_id": t["track_id"], "disc_number": t["disc_number"], "track_number": t["track_number"],
                "isrc": t["isrc"], "track_title": t["title"], "track_version_title": None,
                "duration_seconds": t["duration_seconds"], "track_genre": None, "track_parental_warning": None,
                "track_p_line_year": None, "track_p_line_text": None, "audio_file": None, "audio_md5": None,
                "track_contributors": json.dumps(t["contributors"]),
            })
    return rows


def test_release_dicts_in_this_file_are_accepted_by_the_records_module() -> None:
    record = release_from_dict(release_dict(3, tracks=2))
    assert isinstance(record, Release) and len(record.tracks) == 2 and record.tracks[1].isrc == "USABC2400302"


def test_item_error_reads_well() -> None:
    err = ItemError(id=1, message="release 1: title='': empty; fix: set it")
    assert str(err) == err.message and err.fields == ()


# --------------------------------------------------------------------------- worker processes


def _worker_pids(b: DDEXBuilder) -> list[int]:
    assert b._pool is not None
    return list(b._pool._processes)  # type: ignore[attr-defined]


def _wait_gone(pids: list[int], seconds: float = 30.0) -> list[int]:
    """The pids still alive after waiting up to ``seconds`` (a wait, not a speed check)."""
    import time

    deadline = time.monotonic() + seconds
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if Path(f"/proc/{p}").exists() and "Z" not in _state(p)]
    return alive


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
    except OSError:
        return "Z"


def test_a_killed_worker_is_replaced_and_its_batch_redone() -> None:
    import signal

    with DDEXBuilder(sender=SENDER, recipient=RECIPIENT, workers=2) as b:
        releases = [release_dict(n) for n in range(1, 41)]
        expected = [s.checksum for s in b.build_batch(releases, batch_size=5).success]
        os.kill(_worker_pids(b)[0], signal.SIGKILL)
        again = b.build_batch(releases, batch_size=5)
        assert [s.checksum for s in again.success] == expected and again.errors == []


def test_a_builder_dropped_without_close_stops_its_workers() -> None:
    import gc

    b = DDEXBuilder(sender=SENDER, recipient=RECIPIENT, workers=2)
    b.build_batch([release_dict(n) for n in range(1, 5)], batch_size=1)
    pids = _worker_pids(b)
    del b
    gc.collect()
    assert _wait_gone(pids) == []


def test_validate_each_reports_a_document_the_xsd_refuses(builder: DDEXBuilder, schema_dir: Path, tmp_path: Path) -> None:
    # A schema folder whose "4.3" XSD is really ERN 4.2's: every 4.3 document fails against it.
    wrong = tmp_path / "schemas" / "ern" / "43"
    wrong.mkdir(parents=True)
    for xsd in (schema_dir / "ern" / "42").iterdir():
        (wrong / xsd.name).symlink_to(xsd)
    good = builder.build_batch([release_dict(n) for n in range(1, 4)], validate_each=True, schema_dir=schema_dir)
    bad = builder.build_batch([release_dict(n) for n in range(1, 4)], validate_each=True, schema_dir=tmp_path / "schemas")
    assert (len(good.success), good.errors) == (3, [])
    assert [(e.id, e.stage, e.retryable) for e in bad.errors] == [(n, "validate", False) for n in (1, 2, 3)]
    assert all("not valid against the ERN 4.3 XSD" in e.message for e in bad.errors)
