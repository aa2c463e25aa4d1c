"""The whole pipeline through Airflow's own UI, as a user drives it.

A real Airflow (`airflow standalone` in a temporary AIRFLOW_HOME on a free port) with the
deterministic test LLM behind `llm_default`; headless Chromium logs in, opens `webscale_rl`,
fills the trigger form, triggers, waits for the run to succeed, then opens the run's report
through the plugin's "Dataset cards" nav entry. Screenshots land in tests/artifacts/:
ui_trigger_form.png, ui_run_grid.png, ui_dataset_cards.png, ui_report.png; then the
`webscale_rl_llm` connection's edit form (ui_connection_form.png) and its Test button's
answer from the test server (ui_connection_test.png); ui_failure.png plus
airflow-standalone.log when something goes wrong.

Needs Chromium and chromedriver (`make browser`); takes about four minutes.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import uuid

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from support.airflow_server import AirflowServer
from support.browser import artifacts_dir, chromium_driver, save_screenshot
from webscale_rl.config import run_folder_name

# One worker runs the heavy live tests (a real model, airflow standalone) one after another.
pytestmark = pytest.mark.live

DAG_ID = "webscale_rl"
CORPUS = "sample/docs_stem.jsonl"
# A hang guard, not a speed check: alone the run takes ~3 min; beside a busy worker, over 6.
RUN_TIMEOUT_S = 900
UI_TIMEOUT_S = 60


@pytest.fixture
def airflow(sample_data_dir, fake_llm):
    """Airflow standalone wired to the sample data dir and the test LLM; always stopped."""
    server = AirflowServer(
        data_dir=sample_data_dir,
        llm_conn=fake_llm.connection(),
        log_copy=artifacts_dir() / "airflow-standalone.log",
        # The connection form's Test button (off by default in Airflow).
        extra_env={"AIRFLOW__CORE__TEST_CONNECTION": "Enabled"},
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _wait(driver, timeout: float = UI_TIMEOUT_S) -> WebDriverWait:
    return WebDriverWait(
        driver, timeout, poll_frequency=0.25, ignored_exceptions=(StaleElementReferenceException,)
    )


def _set_text(element, value: str) -> None:
    """Replace a React-controlled input's value the way a user does (select all, type)."""
    element.send_keys(Keys.CONTROL, "a")
    element.send_keys(Keys.DELETE)
    element.send_keys(value)


def _login(driver, af: AirflowServer) -> None:
    driver.get(f"{af.base_url}/")
    wait = _wait(driver)
    username = wait.until(EC.visibility_of_element_located((By.NAME, "username")))
    username.send_keys(af.username)
    driver.find_element(By.NAME, "password").send_keys(af.password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    # The UI shell (nav with the Browse menu) appears once the token is accepted.
    wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, "button[aria-label=Browse]")))
    assert "/auth/login" not in driver.current_url, driver.current_url


def _open_dag(driver, af: AirflowServer) -> None:
    driver.get(f"{af.base_url}/dags/{DAG_ID}")
    _wait(driver).until(
        EC.element_to_be_clickable((By.CSS_SELECTOR, "[data-testid=trigger-dag-button]"))
    )


def _unpause_in_ui(driver) -> None:
    toggle = _wait(driver).until(
        EC.presence_of_element_located((By.CSS_SELECTOR, "[data-testid=toggle-pause]"))
    )
    if toggle.get_attribute("data-state") != "checked":
        toggle.click()
        _wait(driver).until(
            lambda d: (
                d.find_element(By.CSS_SELECTOR, "[data-testid=toggle-pause]").get_attribute(
                    "data-state"
                )
                == "checked"
            )
        )


def _fill_and_trigger(driver, run_label: str) -> None:
    wait = _wait(driver)
    driver.find_element(By.CSS_SELECTOR, "[data-testid=trigger-dag-button]").click()
    corpus = wait.until(EC.visibility_of_element_located((By.NAME, "element_corpus")))
    assert corpus.get_attribute("value") == "sample"  # the Param default, rendered by the form
    _set_text(corpus, CORPUS)
    label = driver.find_element(By.NAME, "element_run_label")
    _set_text(label, run_label)
    wait.until(
        lambda d: (
            d.find_element(By.NAME, "element_corpus").get_attribute("value") == CORPUS
            and d.find_element(By.NAME, "element_run_label").get_attribute("value") == run_label
        )
    )
    submit = wait.until(
        EC.element_to_be_clickable((By.CSS_SELECTOR, "[data-testid=trigger-dag-submit]"))
    )
    save_screenshot(driver, "ui_trigger_form.png", full_page=False)
    submit.click()
    wait.until(EC.invisibility_of_element_located((By.NAME, "element_corpus")))


def _find_run(af: AirflowServer, run_label: str) -> dict:
    # An API bound, not a UI one: the server can be slow to answer while the run starts.
    deadline = time.monotonic() + 5 * UI_TIMEOUT_S
    while time.monotonic() < deadline:
        runs = af.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns?limit=50")["dag_runs"]
        mine = [r for r in runs if (r.get("conf") or {}).get("run_label") == run_label]
        if mine:
            assert len(mine) == 1, mine
            return mine[0]
        time.sleep(1)
    raise AssertionError(f"no {DAG_ID} run with run_label={run_label!r} appeared after triggering")


def _wait_finished(af: AirflowServer, run_id: str) -> dict:
    quoted = urllib.parse.quote(run_id, safe="")
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        run = af.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{quoted}")
        if run["state"] in ("success", "failed"):
            return run
        time.sleep(2)
    raise AssertionError(f"{run_id} did not finish within {RUN_TIMEOUT_S}s")


def _failed_tasks(af: AirflowServer, run_id: str) -> list[str]:
    quoted = urllib.parse.quote(run_id, safe="")
    tis = af.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{quoted}/taskInstances?limit=200")[
        "task_instances"
    ]
    return [
        f"{ti['task_id']}[{ti.get('map_index')}]={ti['state']}"
        for ti in tis
        if ti["state"] not in ("success", "skipped")
    ]


def _open_report_via_nav(driver, af: AirflowServer, run_id: str, run_label: str) -> str:
    """Browse → Dataset cards (the plugin's nav entry) → the run's report link; returns its URL."""
    wait = _wait(driver)
    wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, "button[aria-label=Browse]"))).click()
    entry = wait.until(
        EC.element_to_be_clickable(
            (By.XPATH, "//*[@role='menuitem'][normalize-space(.)='Dataset cards']")
        )
    )
    entry.click()
    wait.until(EC.url_contains("webscale-rl-runs"))
    frame = wait.until(EC.presence_of_element_located((By.TAG_NAME, "iframe")))
    assert frame.get_attribute("src").rstrip("/").endswith("webscale-rl/runs"), frame.get_attribute(
        "src"
    )
    driver.switch_to.frame(frame)
    try:
        row_xpath = f"//table[@id='runs']//tr[td[1][normalize-space(.)='{run_id}']]"
        row = wait.until(EC.presence_of_element_located((By.XPATH, row_xpath)))
        cells = [td.text for td in row.find_elements(By.TAG_NAME, "td")]
        assert cells[1] == run_label and cells[2] == "success", cells
        assert int(cells[3]) > 0, cells  # accepted pairs
        driver.switch_to.default_content()
        save_screenshot(driver, "ui_dataset_cards.png", full_page=False)
        driver.switch_to.frame(frame)
        row.find_element(By.LINK_TEXT, "report").click()
        # WebDriver's title is the top-level page's; the report's is the frame document's.
        wait.until(lambda d: d.execute_script("return document.title").startswith("Dataset card"))
        url = driver.execute_script("return document.location.href")
        summary = driver.find_element(By.ID, "summary").text
        assert "accepted pairs" in summary, summary
    finally:
        driver.switch_to.default_content()
    expected = f"/webscale-rl/runs/{run_folder_name(run_id)}/report"
    assert urllib.parse.urlparse(url).path == expected, url
    return url


def _button(label: str) -> tuple[str, str]:
    """A button by its accessible name: aria-label, title or its text."""
    return (
        By.XPATH,
        f".//button[@aria-label='{label}' or @title='{label}' or normalize-space(.)='{label}']",
    )


def _connection_form_and_test(driver, af: AirflowServer, server) -> None:
    """Admin → Connections: a webscale_rl_llm connection's edit form shows the client's
    fields under their labels, and its Test button reaches the test server."""
    conn_id = "llm_ui_form"
    af.api(
        "POST",
        "/api/v2/connections",
        {
            "connection_id": conn_id,
            "conn_type": "webscale_rl_llm",
            "host": server.base_url,
            # Airflow 3.3.2's list-row Test button sends port 0 for a connection without one
            # and the API refuses that as "a different destination" (apache/airflow#73298,
            # fixed after 3.3.2): the stored port is the Base URL's, so the button works.
            "port": server.port,
            "password": "EMPTY",
            # The edit form lists the extras a connection holds: every field, set.
            "extra": json.dumps(
                {
                    "model": server.model,
                    "structured_output": "json_schema",
                    "max_concurrency": 16,
                    "base_urls": server.base_url,
                    "stage_models": json.dumps({"verify": server.model}),
                    "timeout_s": 30,
                    "max_tokens": 512,
                }
            ),
        },
    )
    wait = _wait(driver)
    driver.get(f"{af.base_url}/connections")
    row_xpath = f"//tr[.//*[normalize-space(text())='{conn_id}']]"
    row = wait.until(EC.presence_of_element_located((By.XPATH, row_xpath)))
    row.find_element(*_button("Edit Connection")).click()

    def text(label: str) -> tuple[str, str]:
        return (By.XPATH, f"//*[normalize-space(text())='{label}']")

    # Standard fields relabelled for this type; the client's own under "Extra Fields".
    for label in ("LLM server (OpenAI-compatible, webscale_rl)", "Base URL", "API key"):
        wait.until(EC.visibility_of_element_located(text(label)))
    wait.until(EC.element_to_be_clickable(text("Extra Fields"))).click()
    for label in (
        "Model",
        "Structured output",
        "Max concurrency",
        "More replicas",
        "Per-stage models",
        "Timeout (s)",
        "Max tokens",
    ):
        wait.until(EC.visibility_of_element_located(text(label)))
    save_screenshot(driver, "ui_connection_form.png", full_page=False)
    driver.switch_to.active_element.send_keys(Keys.ESCAPE)
    wait.until(EC.invisibility_of_element_located(text("Extra Fields")))
    # The row's Test button: the server's answer comes back as a toast.
    row = wait.until(EC.presence_of_element_located((By.XPATH, row_xpath)))
    row.find_element(*_button("Test Connection")).click()
    wait.until(
        EC.visibility_of_element_located(
            (By.XPATH, "//*[contains(normalize-space(.), 'replica(s) answer, serving fake-model')]")
        )
    )
    save_screenshot(driver, "ui_connection_test.png", full_page=False)


def test_trigger_from_the_ui_and_read_the_report(airflow, sample_data_dir, fake_llm):
    run_label = f"ui-browser-{uuid.uuid4().hex[:8]}"
    (artifacts_dir() / "ui_failure.png").unlink(missing_ok=True)  # only ever from this run
    with chromium_driver() as driver:
        try:
            _login(driver, airflow)
            _open_dag(driver, airflow)
            _unpause_in_ui(driver)
            _fill_and_trigger(driver, run_label)

            run = _find_run(airflow, run_label)
            assert run["conf"]["corpus"] == CORPUS, run["conf"]
            assert run["run_type"] == "manual", run
            run_id = run["dag_run_id"]
            finished = _wait_finished(airflow, run_id)
            assert finished["state"] == "success", (finished, _failed_tasks(airflow, run_id))

            # The grid of the successful run: every task box rendered, none failed.
            driver.get(
                f"{airflow.base_url}/dags/{DAG_ID}/runs/{urllib.parse.quote(run_id, safe='')}"
            )
            _wait(driver).until(
                EC.visibility_of_element_located(
                    (By.XPATH, f"//*[contains(normalize-space(.), '{run_id}')]")
                )
            )
            # The run header's state badge.
            _wait(driver).until(
                EC.visibility_of_element_located(
                    (By.XPATH, "//*[normalize-space(text())='Success']")
                )
            )
            _wait(driver).until(
                EC.visibility_of_element_located(
                    (By.XPATH, "//*[normalize-space(.)='finalize_run']")
                )
            )
            save_screenshot(driver, "ui_run_grid.png", full_page=False)

            report_url = _open_report_via_nav(driver, airflow, run_id, run_label)
            save_screenshot(driver, "ui_report_in_airflow.png", full_page=False)
            # The report on its own, full page (in the UI it sits in an iframe).
            driver.get(report_url)
            assert driver.title.startswith("Dataset card"), driver.title
            shot = save_screenshot(driver, "ui_report.png")
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

            _connection_form_and_test(driver, airflow, fake_llm)
        except BaseException:
            save_screenshot(driver, "ui_failure.png", full_page=False)
            raise

    export = sample_data_dir / "exports" / run_folder_name(run_id)
    assert (export / "report.html").is_file()
    assert (export / "qa.jsonl").stat().st_size > 0
