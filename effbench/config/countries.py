"""Country codes codecarbon knows, so a mistyped CO2 region fails before any run starts."""

from __future__ import annotations

import difflib
import functools
import json

from effbench.errors import EffbenchError


@functools.cache
def known_countries() -> dict[str, str]:
    """ISO 3166-1 alpha-3 code → country name, from the energy-mix table codecarbon ships."""
    from codecarbon.input import DataSource  # imported here: `import effbench.config.suite` stays fast

    # The path alone: DataSource's loaders also read codecarbon's CSV tables with pandas (~0.4 s).
    with open(DataSource().global_energy_mix_data_path, encoding="utf-8") as f:
        mix = json.load(f)
    return {code: entry.get("country_name", code) for code, entry in sorted(mix.items())}


def check_country(code: str) -> str:
    """The upper-cased code if codecarbon has grid data for it; otherwise an error with suggestions."""
    countries = known_countries()
    upper = code.strip().upper()
    if upper in countries:
        return upper
    message = (
        f"unknown country code {code!r}: expected an ISO 3166-1 alpha-3 code codecarbon knows, "
        f"e.g. USA, FRA, DEU ({len(countries)} known)"
    )
    suggestions = _suggest(code.strip(), countries)
    if suggestions:
        message += "; did you mean " + " or ".join(f"{c} ({countries[c]})" for c in suggestions) + "?"
    raise EffbenchError(message)


def _suggest(text: str, countries: dict[str, str]) -> list[str]:
    by_name = {name.lower(): code for code, name in countries.items()}
    if text.lower() in by_name:  # a country's name instead of its code: that code is the answer
        return [by_name[text.lower()]]
    found = difflib.get_close_matches(text.upper(), countries, n=3)
    found += [by_name[n] for n in difflib.get_close_matches(text.lower(), by_name, n=3)]
    return list(dict.fromkeys(found))[:3]
