"""The run's report.html as a reader sees it: opened from disk in headless Chromium.

Needs Chromium and chromedriver (`make browser`; `make test` installs them). A missing
browser is an error, not a skip. The screenshot lands in tests/artifacts/report.png.
"""

from __future__ import annotations

import re

import pytest
from airflow.dag_processing.dagbag import DagBag
from selenium.webdriver.common.by import By

from conftest import ROOT
from support import browser
from support.browser import BrowserMissing, chromium_driver, save_screenshot
from webscale_rl.config import run_folder_name

# Chromium is a real server process: the `live` group, one test at a time on one worker.
pytestmark = pytest.mark.live

PLOTS = ("funnel", "domains", "answer_words", "tokens")


@pytest.fixture(scope="module")
def dag():
    return DagBag(dag_folder=str(ROOT / "dags")).dags["webscale_rl"]


def test_report_renders_in_a_browser(dag, sample_data_dir, fake_llm):
    run = dag.test(run_conf={"corpus": "sample/docs_stem.jsonl", "run_label": "browser"})
    assert str(run.state) == "success"
    folder = sample_data_dir / "exports" / run_folder_name(run.run_id)
    report = folder / "report.html"
    assert report.is_file(), sorted(p.name for p in folder.parent.glob("*/*"))
    with (folder / "qa.jsonl").open(encoding="utf-8") as f:
        exported_pairs = sum(1 for line in f if line.strip())
    assert exported_pairs > 0

    with chromium_driver() as driver:
        driver.get(report.as_uri())
        assert driver.title.startswith("Dataset card"), driver.title

        summary = driver.find_element(By.ID, "summary").text
        shown = re.match(r"\s*(\d[\d,]*) accepted pairs\b", summary)
        assert shown, summary
        assert int(shown.group(1).replace(",", "")) == exported_pairs, summary

        for key in PLOTS:
            img = driver.find_element(By.ID, f"plot-{key}")
            assert "plot" in img.get_attribute("class").split()
            assert img.get_attribute("src").startswith("data:image/png;base64,")
            decoded = driver.execute_script(
                "const i = arguments[0]; return [i.complete, i.naturalWidth, i.naturalHeight];", img
            )
            assert decoded[0] is True and decoded[1] > 0 and decoded[2] > 0, (key, decoded)
            assert img.is_displayed(), key

        shot = save_screenshot(driver, "report.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_browser_is_an_error_that_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(browser, "CHROMIUM", tmp_path / "chromium")
    with pytest.raises(BrowserMissing, match="make browser"), chromium_driver():
        pass
