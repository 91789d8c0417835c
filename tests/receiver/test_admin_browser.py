"""/admin in headless Chromium: a dead event, the fault fixed, a click on Replay, and the status moves on."""
from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from receiver import stats
from receiver.models import EventStatus
from tests.conftest import API_TOKEN, wait_for
from tests.workers.test_refetch import ALIBABA, events_when, order_when, send

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="Debian's chromium and chromium-driver are not installed (.ci/run installs them: apt-get install chromium chromium-driver)",
)


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Headless Chromium driven through chromedriver, with a profile of its own and JavaScript off."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(arg)
    # The pages must work with JavaScript off (they have none, and the CSP forbids it): every test here runs so.
    options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
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
    browser.get(f"{url.scheme}://admin:{API_TOKEN}@{url.netloc}/admin/events?status=dead")
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
    assert "233.44 CNY" in browser.find_element(By.ID, "history").text  # the order, fetched after the replay


def test_search_an_order_see_its_price_correction_and_refetch_a_new_version(app, client, sandbox, worker, live_url, browser):
    from selenium.webdriver.common.by import By

    provider = sandbox.providers["xportcn"]
    send(client, provider, ALIBABA, "ORDER_CREATE")
    order_no = order_when(client, ALIBABA)["order_no"]
    send(client, provider, ALIBABA, provider.correct_price(ALIBABA, -150))
    order_when(client, ALIBABA, total_amount=23194)

    url = urlsplit(live_url)
    browser.get(f"{url.scheme}://admin:{API_TOKEN}@{url.netloc}/admin/orders")
    browser.find_element(By.ID, "q").send_keys(order_no)
    browser.find_element(By.ID, "search").click()
    assert browser.find_element(By.ID, "total").text == "231.94 CNY"
    assert "total_amount: 233.44 CNY → 231.94 CNY" in browser.find_element(By.ID, "timeline").text
    assert browser.find_element(By.ID, "version").text == "2"

    provider.correct_price(ALIBABA, -100)  # no push this time: the button has to fetch it
    browser.find_element(By.ID, "refetch").click()
    assert "Re-fetch queued" in browser.find_element(By.ID, "notice").text

    def shown_version() -> str | None:
        browser.refresh()
        version = browser.find_element(By.ID, "version").text
        return version if version == "3" else None

    assert wait_for(shown_version, timeout=20, interval=0.3) == "3"
    assert browser.find_element(By.ID, "total").text == "230.94 CNY"
    assert "total_amount: 231.94 CNY → 230.94 CNY" in browser.find_element(By.ID, "timeline").text


def test_the_front_page_opens_on_the_days_charts(app, client, sandbox, worker, live_url, browser):
    from selenium.webdriver.common.by import By

    svc = app.extensions["receiver"]
    minute = int(time.time() // 60)
    # A day of pushes as the web's tally writes them: one count per hour, more each hour.
    stats.flush(svc, Counter({(minute - 60 * h, "push:demo:accepted"): 24 - h for h in range(24)}))
    send(client, sandbox.providers["xportcn"], ALIBABA, "ORDER_CREATE")
    events_when(app, EventStatus.PROCESSED)

    url = urlsplit(live_url)
    browser.get(f"{url.scheme}://admin:{API_TOKEN}@{url.netloc}/admin/")
    chart = browser.find_element(By.ID, "chart-pushes-hours")
    drawn = chart.find_elements(By.CSS_SELECTOR, "rect.bar")
    assert len(drawn) >= 24 and all(bar.size["height"] > 0 for bar in drawn)
    tallest = max(drawn, key=lambda bar: bar.size["height"])
    assert tallest.get_attribute("data-value") in ("24", "25")  # this hour: 24, and the push just sent once flushed
    assert browser.find_element(By.ID, "chart-latency-minutes").is_displayed()
    assert browser.find_element(By.ID, "flower").get_attribute("href").startswith("http://127.0.0.1:5555")
