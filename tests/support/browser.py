"""Headless Chromium for browser tests, from the Debian packages (`make browser`).

Selenium is pointed at /usr/bin/chromium and /usr/bin/chromedriver explicitly, so Selenium
Manager is never asked to find or download a browser (CI has no internet beyond the package
registries). Screenshots and the chromedriver log go to tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS_DIR = Path(__file__).resolve().parents[1] / "artifacts"
WINDOW_SIZE = (1280, 1024)

# Belt and braces: with explicit paths Selenium skips its manager, and offline it could not
# download anything even if it were asked.
os.environ.setdefault("SE_OFFLINE", "true")


class BrowserMissing(RuntimeError):
    """Chromium or chromedriver is not installed where the browser tests expect it."""


def _check_installed() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        raise BrowserMissing(
            f"{' and '.join(missing)} not found: the browser tests need headless Chromium from the "
            "Debian packages chromium and chromium-driver. Run `make browser` (apt-get installs "
            "them; `make test` does it for you)."
        )


def artifacts_dir() -> Path:
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS_DIR


@contextmanager
def chromium_driver(window_size: tuple[int, int] = WINDOW_SIZE) -> Iterator:
    """A headless Chromium WebDriver that works as root in a container; quit on exit."""
    _check_installed()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--no-first-run",
        "--hide-scrollbars",
        f"--window-size={window_size[0]},{window_size[1]}",
    ):
        options.add_argument(flag)
    service = Service(
        executable_path=str(CHROMEDRIVER),
        service_args=["--log-level=WARNING"],
        log_output=str(artifacts_dir() / "chromedriver.log"),
    )
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()


def save_screenshot(driver, name: str, full_page: bool = True) -> Path:
    """Save a PNG of the page to tests/artifacts/<name>; the whole page by default."""
    path = artifacts_dir() / name
    if full_page:
        # Chromium's DevTools protocol can render beyond the viewport in one capture.
        size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        shot = driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {
                    "x": 0,
                    "y": 0,
                    "width": size["width"],
                    "height": size["height"],
                    "scale": 1,
                },
            },
        )
        path.write_bytes(base64.b64decode(shot["data"]))
    elif not driver.save_screenshot(str(path)):
        raise RuntimeError(f"could not save a screenshot to {path}")
    return path
