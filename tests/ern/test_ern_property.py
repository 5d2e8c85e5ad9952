"""Property: every release the catalog allows builds a document the official XSD accepts, in every version.

One generated release is built and validated in all three versions, so each
version sees every example (500 per version) for a third of the generation cost.
"""
from __future__ import annotations

from pathlib import Path

from ern_strategies import releases
from hypothesis import HealthCheck, given, settings

from ddex_etl.ern import BuildContext, build, build_takedown
from ddex_etl.ern.validate import load_schema, validate_bytes
from ddex_etl.models import Release

VERSIONS = ("4.3", "4.2", "3.8.2")
CONTEXTS = {v: BuildContext(ern_version=v) for v in VERSIONS}
SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]


def test_generated_releases_validate_in_every_version(schema_dir: Path) -> None:
    for v in VERSIONS:
        load_schema(schema_dir, v)  # compile once, outside the examples

    @settings(max_examples=500, deadline=None, suppress_health_check=SLOW_OK)
    @given(release=releases())
    def check(release: Release) -> None:
        for v in VERSIONS:
            doc = build(release, CONTEXTS[v])
            # Clean text needs no repair; deals may be warned about (they are data, not errors).
            assert not [w for w in doc.warnings if "removed" in w], doc.warnings
            issues = validate_bytes(doc.xml, schema_dir, v)
            assert issues == [], f"ERN {v}, release {release.release_id}: {issues[:3]}"

    check()


def test_generated_takedowns_validate(schema_dir: Path) -> None:
    @settings(max_examples=50, deadline=None, suppress_health_check=SLOW_OK)
    @given(release=releases())
    def check(release: Release) -> None:
        for v in VERSIONS:
            doc = build_takedown(release, CONTEXTS[v])
            assert validate_bytes(doc.xml, schema_dir, v) == [], f"ERN {v} takedown"

    check()


def test_hostile_text_never_crashes_and_never_yields_an_invalid_document(schema_dir: Path) -> None:
    from ern_strategies import dirty_text

    from ddex_etl.errors import ReleaseDataError

    strict = {v: BuildContext(ern_version=v, repair=False) for v in VERSIONS}

    @settings(max_examples=150, deadline=None, suppress_health_check=SLOW_OK)
    @given(release=releases(dirty_text))
    def check(release: Release) -> None:
        for v in VERSIONS:
            for ctx in (CONTEXTS[v], strict[v]):
                try:
                    doc = build(release, ctx)
                except ReleaseDataError as e:
                    assert e.problems and str(e).startswith(f"release {release.release_id}: ")
                    continue
                assert validate_bytes(doc.xml, schema_dir, v) == [], f"ERN {v} repair={ctx.repair}"
                if not ctx.repair:  # nothing repaired (deal warnings are about data, not repairs)
                    assert not [w for w in doc.warnings if "removed" in w], doc.warnings

    check()
