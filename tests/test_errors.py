"""Errors cross process boundaries (worker processes, Dask workers): each pickles back to an equal error."""
from __future__ import annotations

import pickle

import pytest

from ddex_etl.api.batch import BatchError, ItemError
from ddex_etl.errors import ConfigError, EtlError, FieldProblem, InterruptedRun, MediaError, OutputError, ReleaseDataError, TransientError
from ddex_etl.run import RunFailed

PROBLEM = FieldProblem("tracks[0].isrc", "XX", "not an ISRC", "use 12 characters: CC-XXX-YY-NNNNN")
CASES = [
    ReleaseDataError(7, [PROBLEM]),
    ReleaseDataError("cat-9", (PROBLEM, FieldProblem("title", "", "empty", "give the release a title"))),
    MediaError(12, [FieldProblem("tracks[1].audio", "a.flac", "file missing", "put the file under media_root")]),
    ConfigError(["extract.chunk_size: must be positive", "run.workers: must be >= 0"]),
    ConfigError("run 4 not found; fix: pick a run id from `etl runs`"),
    BatchError([ItemError(id=3, message="release 3: bad", problems=(PROBLEM,)), ItemError(id=4, message="release 4: x")]),
    TransientError("chunk 3: connection lost"),
    OutputError("chunk 2: disk full"),
    InterruptedRun("run 1 interrupted"),
    RunFailed("run 1 stopped"),
]


@pytest.mark.parametrize("error", CASES, ids=lambda e: type(e).__name__)
def test_an_error_pickles_to_an_equal_error(error: EtlError) -> None:
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert str(back) == str(error)
    assert back.args == error.args
    assert vars(back) == vars(error)
    assert back.retryable == error.retryable and back.exit_code == error.exit_code


def test_a_release_error_keeps_its_release_and_problems() -> None:
    back = pickle.loads(pickle.dumps(MediaError(12, [PROBLEM])))
    assert isinstance(back, ReleaseDataError)
    assert back.release_id == 12
    assert back.problems == (PROBLEM,)
    assert str(back) == f"release 12: {PROBLEM}"


PRINTABLE_CASES = [
    ("plain text, kept as it is", "plain text, kept as it is"),
    ("line one\nERROR pipeline forged", "line one\\nERROR pipeline forged"),
    ("tab\tcarriage\rreturn", "tab\\tcarriage\\rreturn"),
    ("bell\x07 escape\x1b[2J CSI\x9b2J", "bell\\x07 escape\\x1b[2J CSI\\x9b2J"),
    ("line\u2028separator\u2029paragraph", "line\\u2028separator\\u2029paragraph"),
    ("ünïcödé and a back\\slash", "ünïcödé and a back\\slash"),
]


@pytest.mark.parametrize(("text", "shown"), PRINTABLE_CASES)
def test_store_text_is_shown_on_one_line_with_control_characters_escaped(text: str, shown: str) -> None:
    from ddex_etl.errors import printable

    assert printable(text) == shown
    assert len(printable(text).splitlines()) == 1
