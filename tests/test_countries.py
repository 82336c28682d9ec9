"""The CO2 region is checked against codecarbon's own country table, with suggestions for typos."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from effbench.config.countries import check_country, known_countries
from effbench.errors import EffbenchError


def test_known_countries_are_alpha3_codes_with_names():
    countries = known_countries()
    assert len(countries) > 100
    assert all(re.fullmatch(r"[A-Z]{3}", code) for code in countries)
    assert countries["FRA"] == "France"
    assert countries["USA"] == "United States"


def test_known_countries_reads_only_the_table():
    """Checking a suite must not pay for codecarbon's pandas tables (~0.4 s) or a tracker."""
    code = (
        "import sys; from effbench.config.countries import known_countries; "
        "known_countries(); print('pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert known_countries() is known_countries()  # cached


@pytest.mark.parametrize(("given", "expected"), [("USA", "USA"), ("fra", "FRA"), (" deu ", "DEU")])
def test_known_codes_accepted_upper_cased(given, expected):
    assert check_country(given) == expected


def test_unknown_code_rejected_with_examples_and_count():
    with pytest.raises(EffbenchError) as err:
        check_country("XYZ")
    message = str(err.value)
    assert "unknown country code 'XYZ'" in message
    assert "ISO 3166-1 alpha-3" in message
    assert "USA, FRA, DEU" in message
    assert f"({len(known_countries())} known)" in message


@pytest.mark.parametrize(
    ("given", "suggested"),
    [("France", "FRA (France)"), ("Germany", "DEU (Germany)"), ("US", "USA"), ("Frnace", "FRA"), ("FRN", "FRA")],
)
def test_did_you_mean(given, suggested):
    with pytest.raises(EffbenchError, match="did you mean") as err:
        check_country(given)
    assert suggested in str(err.value)


def test_exact_country_name_suggests_only_its_code():
    with pytest.raises(EffbenchError) as err:
        check_country("united kingdom")
    assert str(err.value).endswith("did you mean GBR (United Kingdom)?")
