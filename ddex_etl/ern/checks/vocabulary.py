"""Catalog spellings -> each ERN version's allowed values (release types, roles, deal terms, ...).

Catalog values are matched case-insensitively against the version's allowed
values (``ddex_etl.ern.avs``), plus a few catalog spellings: ``Compilation``
is an ``Album`` (marked as a multi-artist compilation by the release checks),
``Producer`` is ``StudioProducer`` in ERN 4, ``ww`` is ``Worldwide``.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import avs

# The display roles: credited as DisplayArtist (the rest are contributors).
DISPLAY_ROLES = {"mainartist": "MainArtist", "featuredartist": "FeaturedArtist", "artist": "Artist"}


def _lookup(values: frozenset[str], aliases: dict[str, str] | None = None) -> dict[str, str]:
    table = {v.lower(): v for v in values}
    table.update({v: v for v in values})  # exact values hit without lower()
    for alias, target in (aliases or {}).items():
        if target in values:
            table[alias] = target
    return table


@dataclass(frozen=True)
class Vocabulary:
    """Case-insensitive catalog value -> ERN value tables for one version."""

    version: str
    release_types: dict[str, str]
    roles: dict[str, str]  # non-display roles
    work_roles: frozenset[str]  # ERN 3.8.2: roles credited as IndirectResourceContributor
    commercial_models: dict[str, str]
    use_types: dict[str, str]
    parental: dict[str, str]
    territories: dict[str, str]


def _vocabulary(version: str) -> Vocabulary:
    ern4 = version != "3.8.2"
    roles = set(avs.CONTRIBUTOR_ROLES[version])
    work: frozenset[str] = frozenset()
    if not ern4:
        work = avs.WORK_CONTRIBUTOR_ROLES[version] - avs.CONTRIBUTOR_ROLES[version]
        roles |= work
    return Vocabulary(
        version=version,
        release_types=_lookup(avs.RELEASE_TYPES[version], {"compilation": "Album", "lp": "Album"}),
        roles=_lookup(frozenset(roles), {"producer": "StudioProducer"} if ern4 else {}),
        work_roles=work,
        commercial_models=_lookup(
            avs.COMMERCIAL_MODELS[version],
            {
                "subscription": "SubscriptionModel",
                "adsupported": "AdvertisementSupportedModel",
                "advertisementsupported": "AdvertisementSupportedModel",
                "payasyougo": "PayAsYouGoModel",
                "freeofcharge": "FreeOfChargeModel",
            },
        ),
        use_types=_lookup(avs.USE_TYPES[version]),
        parental=_lookup(avs.PARENTAL_WARNINGS[version], {"clean": "ExplicitContentEdited", "edited": "ExplicitContentEdited"}),
        territories=_lookup(avs.TERRITORIES[version], {"ww": "Worldwide"}),
    )


VOCABULARIES = {v: _vocabulary(v) for v in ("4.3", "4.2", "3.8.2")}
