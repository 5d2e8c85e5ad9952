"""Every check of a name, identifier or id matches the whole value: a trailing newline is refused.

Issue 21 item 16: the checks used ``re.match`` with ``^...$``, and ``$``
matches before a trailing newline, so ``name = "store\\n"`` passed `etl config
check` and every worker of the run then died; an ISRC with a trailing newline
went into the message as it was, without the repair warning. Each case below
failed on that code (the value was accepted); they now use ``fullmatch``.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from etl_cli import etl

from ddex_etl.config import load_config
from ddex_etl.errors import ConfigError, EtlError, ExitCode

# --------------------------------------------------------------------------- the configuration

RECIPIENT = '[[recipients]]\nname = "store-a"\ndpid = "PADPIDA0000000010M"\n'

# key path -> an etl.toml whose value at that key ends in a newline (TOML's "\n" escape)
CONFIG_CASES = {
    "recipients[0].name": '[[recipients]]\nname = "store\\n"\ndpid = "PADPIDA0000000010M"\n',
    "recipients[0].dpid": '[[recipients]]\nname = "store-a"\ndpid = "PADPIDA0000000010M\\n"\n',
    "recipients[0].territories": RECIPIENT + 'territories = ["FR\\n"]\n',
    "transform.sender_dpid": '[transform]\nsender_dpid = "PADPIDA0000000001O\\n"\n',
    "transform.recipient_dpid": '[transform]\nrecipient_dpid = "PADPIDA0000000002M\\n"\n',
    "database.state_schema": '[database]\nstate_schema = "ddex_etl\\n"\n',
    "load.table": '[load]\ntable = "documents\\n"\n',
    "run.scheduler": '[run]\nexecutor = "dask"\nscheduler = "tcp://127.0.0.1:8786\\n"\n',
    "run.job": '[run]\njob = "nightly\\n"\n',
}


@pytest.mark.parametrize("key", CONFIG_CASES, ids=list(CONFIG_CASES))
def test_a_trailing_newline_in_a_configured_name_is_a_problem(tmp_path: Path, key: str) -> None:
    path = tmp_path / "etl.toml"
    path.write_text(CONFIG_CASES[key], encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert [p for p in caught.value.problems if p.startswith(f"{key}:")], caught.value.problems
    # ...and the same value without the newline is fine.
    path.write_text(CONFIG_CASES[key].replace("\\n", ""), encoding="utf-8")
    load_config(path, env={})


def test_a_trailing_newline_from_the_environment_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, env={"ETL_EXECUTOR": "dask", "ETL_SCHEDULER": "tcp://127.0.0.1:8786\n", "ETL_JOB": "a\n"})
    assert sorted(p.split(":")[0] for p in caught.value.problems) == ["run.job (from ETL_JOB)",
                                                                       "run.scheduler (from ETL_SCHEDULER)"]


def test_etl_config_check_refuses_a_recipient_name_ending_in_a_newline(tmp_path: Path) -> None:
    """The issue's case, through the real command: exit 2 naming the key (before: exit 0, then every worker died)."""
    (tmp_path / "etl.toml").write_text(CONFIG_CASES["recipients[0].name"], encoding="utf-8")
    proc = etl(tmp_path, "config", "check")
    assert proc.returncode == ExitCode.USAGE, proc.stdout + proc.stderr
    assert "recipients[0].name: 'store\\n' must be a plain name" in proc.stderr
    run = etl(tmp_path, "run", "--json")
    assert run.returncode == ExitCode.USAGE and json.loads(run.stdout)["error_kind"] == "ConfigError"


@pytest.mark.parametrize("flag", [["--job", "nightly\n"]], ids=["--job"])
def test_a_run_flag_ending_in_a_newline_is_a_usage_error(tmp_path: Path, flag: list[str]) -> None:
    (tmp_path / "etl.toml").write_text('[database]\nurl = "postgresql://nobody@127.0.0.1:1/none"\n')
    proc = etl(tmp_path, "run", *flag)
    assert proc.returncode == ExitCode.USAGE, proc.stderr
    assert "--job: 'nightly\\n' holds a control character" in proc.stderr


# --------------------------------------------------------------------------- identifiers inside the package
# Each case gives a value ending in a newline to one check and says whether it was accepted.


def _refused(fn: Callable[[], object]) -> bool:
    try:
        fn()
    except (EtlError, ValueError, TypeError):
        return True
    return False


def _quote_ident() -> bool:
    from ddex_etl.db import quote_ident

    return not _refused(lambda: quote_ident("documents\n"))


def _release_folder() -> bool:
    import tempfile
    from types import SimpleNamespace

    from ddex_etl.config import Config, LoadConfig
    from ddex_etl.load import Output, loader_for

    with tempfile.TemporaryDirectory() as folder:
        cfg = Config(load=LoadConfig(target="files", directory=Path(folder), layout="ddex-batch"))
        loader = loader_for(cfg, batch_id="20261203020000000")
        doc = SimpleNamespace(release_id=7)
        return not _refused(lambda: loader.relative_path(Output(doc, "0602445790005\n")))  # type: ignore[arg-type]


def _delivery_id() -> bool:
    from ddex_etl.ern import BuildContext

    return not _refused(lambda: BuildContext(delivery_id="run7\n"))


def _language() -> bool:
    from ddex_etl.ern import BuildContext

    return not _refused(lambda: BuildContext(language="en\n"))


def _sender_dpid() -> bool:
    from ddex_etl.ern import BuildContext, Party

    return not _refused(lambda: BuildContext(sender=Party("PADPIDA0000000001O\n", "Demo Label Group")))


def _api_party() -> bool:
    from ddex_etl import DDEXBuilder

    return not _refused(lambda: DDEXBuilder(sender=("PADPIDA0000000001O\n", "Label"),
                                            recipient=("PADPIDA0000000002M", "Store")))


def _duration() -> bool:
    from ddex_etl.extract import records

    # Durations are stripped first; the clock and ISO forms must still be the whole text.
    return bool(records._CLOCK.fullmatch("3:57\n") or records._ISO_DURATION.fullmatch("PT3M\n")
                or records._CLOCK.match("3:57\n") and records._CLOCK.pattern.endswith("$"))


def _array_literal() -> bool:
    from ddex_etl.state.delivered import _array_literal

    # A plain word goes into one array literal unquoted: "abc\n" there would be stored as "abc".
    return _array_literal(["abc\n"]) == "{abc\n}"


def _isrc_listing() -> bool:
    from ddex_etl.state.claims import _PLAIN_ISRC

    # A listed ISRC is written to COPY's text format as is: a newline would end the row early.
    return bool(_PLAIN_ISRC("GBAYE2500001\n"))


PACKAGE_CASES: dict[str, Callable[[], bool]] = {
    "db.quote_ident": _quote_ident,
    "load.FileLoader release folder": _release_folder,
    "ern.BuildContext.delivery_id": _delivery_id,
    "ern.BuildContext.language": _language,
    "ern.BuildContext.sender": _sender_dpid,
    "api.DDEXBuilder party": _api_party,
    "extract.records durations": _duration,
    "state.delivered array literal": _array_literal,
    "state.claims ISRC listing": _isrc_listing,
}


@pytest.mark.parametrize("case", PACKAGE_CASES, ids=list(PACKAGE_CASES))
def test_a_trailing_newline_is_refused_inside_the_package(case: str) -> None:
    assert not PACKAGE_CASES[case]()


def test_a_batch_id_ending_in_a_newline_is_refused(tmp_path: Path) -> None:
    from ddex_etl.config import Config, LoadConfig
    from ddex_etl.load import loader_for

    cfg = Config(load=LoadConfig(target="files", directory=tmp_path, layout="ddex-batch"))
    loader_for(cfg, batch_id="20261203020000000")
    with pytest.raises(EtlError, match="batch"):
        loader_for(cfg, batch_id="20261203020000000\n")


# --------------------------------------------------------------------------- identifiers in catalog data

RELEASE = {
    "release_id": 1, "icpn": "0602445790005", "title": "Northern Lights", "release_type": "Single",
    "label": {"label_id": 1, "name": "Aurora Records", "dpid": "PADPIDA2014021301J"}, "genre": "Electronic",
    "release_date": "2025-03-01", "p_line_text": "2025 Aurora Records", "c_line_text": "2025 Aurora Records",
    "grid": "A10302B0001234567I",
    "cover_image": {"file": "covers/1.jpg", "md5": "5d41402abc4b2a76b9719d911017c592", "width": 3000,
                    "height": 3000, "mime_type": "image/jpeg"},
    "artists": [{"artist_id": 1, "name": "Nova", "role": "MainArtist", "isni": "0000000121032683"}],
    "tracks": [{"track_id": 1, "disc_number": 1, "track_number": 1, "isrc": "GBAYE2500001", "title": "Aurora",
                "duration_seconds": "3:57", "audio_file": "a.wav", "audio_md5": "9e107d9d372bb6826bd81d3542a419d6"}],
    "deals": [{"territories": ["Worldwide"], "commercial_model": "SubscriptionModel",
               "use_types": ["OnDemandStream"], "start_date": "2025-03-01"}],
}


def _with(path: str, value: str) -> dict:
    release = json.loads(json.dumps(RELEASE))
    where: dict = release
    *parents, last = path.split(".")
    for p in parents:
        where = where[p][0] if isinstance(where[p], list) else where[p]
    where[last] = value
    return release


DATA_CASES = {
    "icpn": ("icpn", "0602445790005"),
    "grid": ("grid", "A10302B0001234567I"),
    "tracks[0].isrc": ("tracks.isrc", "GBAYE2500001"),
    "tracks[0].audio_md5": ("tracks.audio_md5", "9e107d9d372bb6826bd81d3542a419d6"),
    "cover_image.md5": ("cover_image.md5", "5d41402abc4b2a76b9719d911017c592"),
    "label.dpid": ("label.dpid", "PADPIDA2014021301J"),
    "artists[0].isni": ("artists.isni", "0000000121032683"),
}


@pytest.mark.parametrize("field", DATA_CASES, ids=list(DATA_CASES))
def test_an_identifier_with_a_trailing_newline_is_repaired_with_a_warning_or_rejected(field: str) -> None:
    """With repair on, the newline is stripped and said; with repair off, the release is rejected naming the
    field. Before, the identifier went into the message with its newline, unannounced."""
    from ddex_etl import DDEXBuilder

    path, good = DATA_CASES[field]
    release = _with(path, good + "\n")
    parties = {"sender": ("PADPIDA2014040101Z", "Aurora Records"), "recipient": ("PADPIDA2011072101T", "Store")}
    with DDEXBuilder(version="4.3", **parties) as builder:
        result = builder.build_batch([release])
    assert not result.errors, result.errors
    (item,) = result.success
    xml = item.xml_bytes
    assert good.encode() in xml and (good + "\n").encode() not in xml
    assert any(field.split("[")[0] in w and "surrounding whitespace" in w for w in item.warnings), item.warnings
    with DDEXBuilder(version="4.3", repair=False, **parties) as strict:
        refused = strict.build_batch([release])
    assert not refused.success and field in refused.errors[0].message
