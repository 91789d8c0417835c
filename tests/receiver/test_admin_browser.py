"""/admin in headless Chromium: a dead event, the fault fixed, a click on Replay, and the status moves on."""
from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from receiver.models import EventStatus
from tests.conftest import API_TOKEN, wait_for
from tests.workers.test_refetch import ALIBABA, events_when, send

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="Debian's chromium and chromium-driver are not installed (.ci/run installs them: apt-get install chromium chromium-driver)",
)


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Headless Chromium driven through chromedriver, with a profile of its own."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(arg)
    # Selenium Manager would look for a driver online; Debian's is given, so keep it offline.
    monkeypatch.setenv("SE_OFFLINE", "true")
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(20)
    # A click starts a navigation and returns: lookups wait for the next page's elements to appear.
    driver.implicitly_wait(10)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def test_click_replay_on_a_dead_event_and_see_it_processed(app, client, sandbox, worker, live_url, browser):
    from selenium.webdriver.common.by import By

    provider = sandbox.providers["xportcn"]
    sandbox.faults.broken_orders[ALIBABA] = (1001, "locked")
    send(client, provider, ALIBABA, "ORDER_CREATE")
    [dead] = events_when(app, EventStatus.DEAD)
    del sandbox.faults.broken_orders[ALIBABA]  # the fix

    url = urlsplit(live_url)
    browser.get(f"{url.scheme}://admin:{API_TOKEN}@{url.netloc}/admin/?status=dead")
    row = browser.find_element(By.ID, f"event-{dead.id}")
    assert "dead" in row.text and "locked" in row.text
    row.find_element(By.LINK_TEXT, str(dead.id)).click()
    assert browser.find_element(By.ID, "status").text == "dead"
    browser.find_element(By.ID, "replay").click()
    assert "Replayed 1 event(s)" in browser.find_element(By.ID, "notice").text

    def shown_status() -> str | None:
        browser.refresh()
        status = browser.find_element(By.ID, "status").text
        return status if status == EventStatus.PROCESSED else None

    assert wait_for(shown_status, timeout=20, interval=0.3) == "processed"
    assert "23344" in browser.find_element(By.ID, "history").text  # the order, fetched after the replay
