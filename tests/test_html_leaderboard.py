"""The interactive leaderboard page (``effbench leaderboard --html``), opened in a real headless Chromium.

Debian's ``chromium`` and ``chromium-driver`` drive it through selenium; nothing is downloaded. Where they are not
installed the browser tests are skipped with that reason (``.ci/run`` installs them).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains

from effbench.errors import EffbenchError
from effbench.present import html_page, leaderboard
from effbench.publish import hub
from effbench.store.load import load
from effbench.store.results import ResultsStore
from tests.conftest import run_cli
from tests.store_helpers import COLUMNS, measurement, run_row, synthetic_store, two_machine_store
from tests.test_hub import REPO, TOKEN, hub_server  # noqa: F401  (the local Hub fixture)

HOSTILE_MODEL = "<script>alert(1)</script>"
HOSTILE_PARAMS = {"note": "<img src=x onerror=alert(2)>"}
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
POINTS = "#chart g.points_marks path"  # one SVG symbol per plotted run (the layer named "points")


@pytest.fixture
def browser(tmp_path):
    """Debian's headless Chromium through its chromedriver, downloading CSVs into tmp_path/downloads."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("Chromium is not installed (apt-get install chromium chromium-driver): no browser to test in")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1300,1400"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.add_experimental_option("prefs", {"download.default_directory": str(tmp_path / "downloads")})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def store_with_failures(root: Path) -> ResultsStore:
    """Two machines' synthetic runs, a failed and a not-applicable run, and a run whose names are markup."""
    store = two_machine_store(root)
    store.write_run(run_row("failed-1", "dtype", {"dtype": "fp16"}, status="failed", error="boom"), [])
    store.write_run(run_row("na-1", "prune-2of4", {}, status="not-applicable", error="no linear layers"), [])
    store.write_run(
        run_row("hostile", "prune-magnitude", HOSTILE_PARAMS, model=HOSTILE_MODEL),
        [measurement("exact_match", 0.5, "", "quality", "micro_copy", stderr=0.02),
         measurement("latency", 70.0, "ms", "computation", ci_low=65.0, ci_high=78.0),
         measurement("peak_memory", 500.0, "MiB", "memory")],
    )  # fmt: skip
    return store


def open_page(driver, path: Path) -> None:
    """Load the page and wait until its chart is drawn."""
    driver.get(path.as_uri())
    wait_points(driver)


def downloaded(target: Path) -> str:
    """The text of a download once Chromium has finished it: it reserves the name with an empty file first and
    writes into ``<name>.crdownload``, renamed over it at the end."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        partial = list(target.parent.glob("*.crdownload")) if target.parent.exists() else []
        if target.exists() and target.stat().st_size and not partial:
            return target.read_text(encoding="utf-8")
        time.sleep(0.1)
    raise AssertionError(f"{target.name} was not downloaded within 30 s")


def wait_points(driver, expected: int | None = None) -> int:
    """The number of points once the chart is drawn (and, if given, shows ``expected`` of them)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        drawn = driver.execute_script("return window.effbenchChart ? window.effbenchChart.points.length : null")
        count = len(driver.find_elements("css selector", POINTS))
        if drawn is not None and drawn == count and (expected is None or count == expected):
            return count
        time.sleep(0.1)
    raise AssertionError(f"the chart did not show {expected} points: {count}")


def console_problems(driver) -> list[dict]:
    """Console errors and warnings the page logged (a blocked network request would be one)."""
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]


def toggle(driver, group: str, value: str) -> None:
    driver.find_element("css selector", f'input[data-filter="{group}"][data-value="{value}"]').click()


@pytest.fixture(scope="module")
def hostile_page(tmp_path_factory) -> Path:
    """``effbench leaderboard --html`` of ``store_with_failures``, written once for the tests that only read it."""
    root = tmp_path_factory.mktemp("hostile")
    store_with_failures(root / "store")
    result = run_cli("leaderboard", "--results", str(root / "store"), "--out", str(root / "lb"), "--html")
    assert result.returncode == 0, result.stderr
    return root / "lb" / "leaderboard.html"


def test_the_page_plots_every_successful_run_and_its_filters_change_the_points(browser, hostile_page, tmp_path):
    results = load(hostile_page.parent.parent / "store")
    ok = [r.run_id for r in results.runs if r.status == "ok"]
    assert len(ok) == 9 and len(results.runs) == 11

    open_page(browser, hostile_page)
    assert console_problems(browser) == []
    assert wait_points(browser) == len(ok)  # every ok run has a score and a latency
    plotted = browser.execute_script("return window.effbenchChart.points.map(p => p.run_id)")
    assert sorted(plotted) == sorted(ok)  # never a failed or not-applicable run
    shown = [e.get_attribute("data-run") for e in browser.find_elements("css selector", "#table tbody tr")]
    assert sorted(shown) == sorted(ok)

    # the diamonds are each machine's Pareto frontier, the one the Markdown leaderboard names
    optimal = browser.execute_script(
        "return window.effbenchChart.points.filter(p => p.pareto === 'Pareto-optimal').map(p => p.run_id)"
    )
    boards = leaderboard.boards(results, COLUMNS)
    expected = {b.entries[i].run.run_id for b in boards for i in b.fronts["latency"]}
    assert sorted(optimal) == sorted(expected)

    toggle(browser, "machine", next(r.machine for r in results.runs if r.hardware_fingerprint == "hwB") + " (hwB)")
    on_a = [r for r in ok if results.run(r).hardware_fingerprint == "hwA"]
    assert wait_points(browser, len(on_a)) == 5
    toggle(browser, "technique", "prune-magnitude")  # 2 synthetic prunings and the hostile run on hwA
    assert wait_points(browser, 2) == 2
    toggle(browser, "stage", "inference")
    assert wait_points(browser, 0) == 0 and browser.find_elements("css selector", "#table tbody tr") == []
    toggle(browser, "stage", "inference")
    wait_points(browser, 2)

    browser.find_element("css selector", "#axis option[value=memory]").click()  # another x-axis, the same runs
    assert wait_points(browser, 2) == 2
    assert "Peak RSS (MiB)" in browser.find_element("css selector", "#chart").text

    shot = tmp_path / "leaderboard.png"
    browser.save_screenshot(str(shot))
    with Image.open(shot) as image:
        assert image.width >= 1000 and len(set(image.convert("L").getdata())) > 10
    assert console_problems(browser) == []


def test_markup_in_names_renders_as_text(browser, hostile_page):
    assert HOSTILE_MODEL not in hostile_page.read_text(encoding="utf-8")  # the data is JSON with '<' escaped
    open_page(browser, hostile_page)
    assert len(browser.find_elements("css selector", "script")) == 3  # the library, the data and the page's own
    assert browser.find_elements("css selector", "img") == []
    row = browser.find_element("css selector", 'tr[data-run="hostile"]')
    assert HOSTILE_MODEL in row.text and HOSTILE_PARAMS["note"] in row.text

    point = next(
        p for p in browser.find_elements("css selector", POINTS) if "alert(1)" in p.get_attribute("aria-label")
    )
    ActionChains(browser).move_to_element(point).perform()
    tooltip = browser.find_element("css selector", "#vg-tooltip-element")
    deadline = time.monotonic() + 5
    while HOSTILE_MODEL not in tooltip.text and time.monotonic() < deadline:
        time.sleep(0.1)
    assert HOSTILE_MODEL in tooltip.text and "Run" in tooltip.text and "hostile" in tooltip.text
    assert tooltip.find_elements("css selector", "script, img") == []
    assert browser.execute_script("return document.title").startswith("effbench leaderboard")
    assert console_problems(browser) == []  # an alert would also have stopped the driver's next command


def test_the_table_sorts_and_the_download_holds_the_rows_shown(browser, hostile_page, tmp_path):
    open_page(browser, hostile_page)
    header = next(h for h in browser.find_elements("css selector", "#table th") if h.text == "Latency (ms)")
    header.click()

    def latencies():
        cells = browser.find_elements("css selector", "#table tbody tr td:nth-child(7)")
        return [float(c.text.split()[0]) for c in cells]

    assert latencies() == sorted(latencies()) and len(latencies()) == 9
    browser.find_element("css selector", "#table th[aria-sort]").click()
    assert latencies() == sorted(latencies(), reverse=True)

    toggle(browser, "technique", "dtype")
    wait_points(browser, 7)
    browser.find_element("css selector", "#download").click()
    rows = list(csv.DictReader(io.StringIO(downloaded(tmp_path / "downloads" / "leaderboard.csv"))))
    assert [float(r["Latency (ms)"]) for r in rows] == pytest.approx(latencies(), abs=0.051)  # the order shown
    assert len(rows) == 7 and "dtype(dtype=bf16)" not in {r["Technique"] for r in rows}
    hostile = next(r for r in rows if r["Run"] == "hostile")
    assert hostile["Model"] == HOSTILE_MODEL
    assert (float(hostile["Latency (ms) low"]), float(hostile["Latency (ms) high"])) == (65.0, 78.0)
    baseline = next(r for r in rows if r["Run"] == "hwA-0")
    assert float(baseline["Score low"]) == pytest.approx(0.9 - 1.96 * 0.02, abs=1e-4)  # ±1.96 stderr (no interval)
    pruned = next(r for r in rows if r["Run"] == "hwA-2")
    assert baseline["Gates"] == "–" and pruned["Gates"] == "99%: fail, 99.9%: fail"  # the board's gates


def test_the_gate_filter_hides_the_runs_with_an_unchecked_result(browser, tmp_path):
    results = load(synthetic_store(tmp_path / "store").root)
    (board,) = leaderboard.boards(results, COLUMNS)
    rows = html_page.page_rows(board)
    assert [r.gates for r in rows] == [{}, *[{"99%": "fail", "99.9%": "fail"}] * 3]  # the board's, baseline none
    verdicts = {"hwA-1": "pass", "hwA-2": "inconclusive", "hwA-3": "fail"}  # one of each, to filter on
    rows = [replace(r, gates={"99%": verdicts[r.run_id], "99.9%": "inconclusive"} if r.gates else {}) for r in rows]
    page = tmp_path / "gates.html"
    page.write_text(html_page.render(rows, "latency", "gates"), encoding="utf-8")
    open_page(browser, page)
    assert wait_points(browser) == 4
    toggle(browser, "gate 99%", "fail")
    assert wait_points(browser, 3) == 3
    assert "hwA-3" not in browser.execute_script("return window.effbenchChart.points.map(p => p.run_id)")
    toggle(browser, "gate 99.9%", "inconclusive")  # every gated run; the baseline has no gate
    assert wait_points(browser, 1) == 1
    assert browser.find_element("css selector", "#table tbody tr").get_attribute("data-run") == "hwA-0"
    assert console_problems(browser) == []


def test_bad_input_is_refused_in_one_line_and_nothing_is_written(tmp_path):
    out = tmp_path / "lb"
    empty = run_cli("leaderboard", "--results", str(tmp_path / "empty"), "--out", str(out), "--html")
    (tmp_path / "empty").mkdir()
    empty_folder = run_cli("leaderboard", "--results", str(tmp_path / "empty"), "--out", str(out), "--html")
    store = ResultsStore(tmp_path / "failed")
    store.write_run(run_row("f1", "dtype", {}, status="failed", error="boom"), [])
    store.write_run(run_row("f2", "prune-2of4", {}, status="not-applicable", error="nothing to prune"), [])
    failed = run_cli("leaderboard", "--results", str(store.root), "--out", str(out), "--html")
    axis = run_cli("leaderboard", "--results", str(store.root), "--out", str(out), "--html", "--axis", "speed")
    synthetic_store(tmp_path / "store")
    unmeasured = run_cli("leaderboard", "--results", str(tmp_path / "store"), "--out", str(out), "--html",
                         "--axis", "ttft")  # fmt: skip
    no_html = run_cli("leaderboard", "--results", str(tmp_path / "store"), "--out", str(out), "--axis", "memory")
    expected = {
        "does not exist or is not a folder": empty,
        "no results in": empty_folder,
        "no successful run to put on the page (1 failed, 1 not-applicable): nothing to plot": failed,
        "unknown axis 'speed'; valid axes: latency, ttft, tpot, energy, cost, memory, size": axis,
        "no successful run measured the ttft axis; measured axes: latency, energy, memory, size": unmeasured,
        "--axis chooses the first x-axis of the page: give --html too": no_html,
    }
    for message, result in expected.items():
        assert result.returncode != 0 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not out.exists()


def test_a_downloaded_dataset_names_its_revision(hub_server, tmp_path):  # noqa: F811
    store = synthetic_store(tmp_path / "store")
    hub.publish(store.root, REPO, endpoint=hub_server.url, token=TOKEN)
    commit = hub_server.state.repos[("dataset", REPO)].commits[-1].oid
    dataset = tmp_path / "downloaded"
    results = hub.fetch(REPO, dataset, endpoint=hub_server.url, token=TOKEN)  # huggingface_hub's local_dir download
    assert html_page.dataset_revision(dataset) == commit
    assert html_page.dataset_revision(store.root) == ""  # a store is no download
    rows = [row for b in leaderboard.boards(results, COLUMNS) for row in html_page.page_rows(b, commit)]
    text = html_page.page(results, leaderboard.boards(results, COLUMNS), dataset)
    data = json.loads(text.split('id="effbench-data">', 1)[1].split("</script>", 1)[0])
    assert {r["revision"] for r in data["rows"]} == {commit} and len(rows) == 4

    edited = next((dataset / "runs").iterdir())
    os.utime(edited, (time.time() + 10, time.time() + 10))  # changed after the download
    assert html_page.dataset_revision(dataset) == ""
    with pytest.raises(EffbenchError, match="unknown axis"):
        html_page.page(results, leaderboard.boards(results, COLUMNS), dataset, "speed")


def test_the_page_belongs_to_the_leaderboards_folder(tmp_path):
    results = load(synthetic_store(tmp_path / "store").root)
    boards = leaderboard.boards(results, COLUMNS)
    out = tmp_path / "lb"
    files = leaderboard.write(results, boards, out, html_page.page(results, boards, tmp_path / "store"))
    assert out / "leaderboard.html" in files
    assert "[leaderboard.html](leaderboard.html)" in (out / "README.md").read_text(encoding="utf-8")
    assert "leaderboard.html" in json.loads((out / ".effbench-manifest.json").read_text())["files"]
    files = leaderboard.write(results, boards, out)  # written by effbench, so replaced by a page-less folder
    assert not (out / "leaderboard.html").exists() and "leaderboard.html" not in (out / "README.md").read_text()
