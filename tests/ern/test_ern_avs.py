"""The hard-coded allowed-value tables agree with DDEX's AVS files, and the mappings land inside them."""
from __future__ import annotations

from pathlib import Path

import pytest

from ddex_etl.ern import _avs_gen, avs
from ddex_etl.ern.checks.vocabulary import DISPLAY_ROLES, VOCABULARIES


def test_tables_match_the_schemas(schema_dir: Path) -> None:
    for table, per_version in _avs_gen.tables(schema_dir).items():
        for version, values in per_version.items():
            assert getattr(avs, table)[version] == frozenset(values), f"{table} {version}: regenerate avs.py"


@pytest.mark.parametrize("version", ["4.3", "4.2", "3.8.2"])
def test_aliases_map_to_allowed_values(version: str) -> None:
    voc = VOCABULARIES[version]
    assert set(voc.release_types.values()) <= avs.RELEASE_TYPES[version]
    assert set(voc.roles.values()) <= avs.CONTRIBUTOR_ROLES[version] | avs.WORK_CONTRIBUTOR_ROLES.get(version, frozenset())
    assert set(voc.commercial_models.values()) <= avs.COMMERCIAL_MODELS[version]
    assert set(voc.parental.values()) <= avs.PARENTAL_WARNINGS[version]
    assert set(voc.territories.values()) <= avs.TERRITORIES[version]
    assert set(DISPLAY_ROLES.values()) <= avs.DISPLAY_ARTIST_ROLES[version]
    assert "UserDefined" not in set(voc.roles.values()) | set(voc.use_types.values())


@pytest.mark.parametrize(
    "version,catalog,ern",
    [("4.3", "Producer", "StudioProducer"), ("4.2", "producer", "StudioProducer"), ("3.8.2", "Producer", "Producer")],
)
def test_producer_is_spelled_per_version(version: str, catalog: str, ern: str) -> None:
    assert VOCABULARIES[version].roles[catalog.lower()] == ern
