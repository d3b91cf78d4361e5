"""The console in a real browser (Debian's Chromium driven by Selenium) against a real gateway fed by DCMTK
``storescu``, and a PHI crawl of every page as admin and viewer.

One gateway for the module: its rule file sends Secondary Captures (``Modality OT``) through with blanked
pixels and photos through the face pipeline with ``no_face: quarantine``. The browser logs in, watches a
storescu study reach *forwarded*, finds the quarantined no-face photo, fixes the rule on the Rules page
(``no_face: mask``), replays the item and watches it reach *forwarded*. Every header value the senders put
in is a canary that must never appear in a page, a URL or a response header. Screenshots of each page are
saved under the module's tmp dir (``console-screens``).
"""

from __future__ import annotations

import re
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from gateway.console.users import write_user
from gateway.core.config import GatewayConfig
from gateway.core.service import Service
from gateway.ops.admin import Role
from tests.conftest import Patient, Study, make_small_sc, make_vl_photo, write_study
from tests.console.conftest import FAST_HASHER, PASSWORDS
from tests.gateway.conftest import gateway_config, storescu, wait_until

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()), reason="apt chromium chromium-driver not installed"
    ),
]

PATIENT = Patient(
    patient_id="CANARYPID7731", name="Canaryname^Zqxwv", birth_date="19230917", issuer="CANARYISSUER"
)
RULES = """version: 1
name: console-e2e
destinations:
  research:
    folder: research
routes:
  - name: screenshots
    match: {Modality: OT}
    pixels: {mode: blank}
    metadata: {profile: basic}
    to: research
  - name: photos
    pixels: {mode: anonymize, engine: blur, no_face: quarantine}
    metadata: {profile: basic}
    to: research
"""


@dataclass
class Site:
    service: Service
    config: GatewayConfig
    url: str
    rules: Path
    screens: Path
    canaries: list[str]


def _canaries(study: Study, *datasets: Any) -> list[str]:
    values = [PATIENT.patient_id, "Canaryname", "Zqxwv", PATIENT.birth_date, "1923-09-17", PATIENT.issuer]
    values += [study.study_uid, study.series_uid, study.accession, study.date, "2011-08-23", "Canarydesc"]
    values += [str(ds.SOPInstanceUID) for ds in datasets]
    return values


def _no_face_jpeg(path: Path) -> Path:
    """A smooth colour gradient: a real JPEG photo with nothing face-like in it."""
    img = Image.linear_gradient("L").resize((320, 240)).convert("RGB")
    img.save(path, quality=90)
    return path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("console-e2e")
    rules = root / "rules.yaml"
    rules.write_text(RULES)
    config = gateway_config(
        root / "gw", rules_file=rules, console={"port": 0, "refresh_s": 2}, quiet_period_s=0.3, workers=1
    )
    config.data_dir.mkdir(parents=True)
    users = config.resolve(config.console.users_file)  # type: ignore[union-attr]
    write_user(users, "alice", Role.ADMIN, PASSWORDS["alice"], FAST_HASHER)
    write_user(users, "victor", Role.VIEWER, PASSWORDS["victor"], FAST_HASHER)
    service = Service(config).start()
    try:
        yield Site(service, config, service.console.url, rules, root / "console-screens", [])
    finally:
        service.stop()


@pytest.fixture(scope="module")
def browser(site: Site) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as ChromeService

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)  # with the driver path below: selenium-manager is never run
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1360,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=ChromeService(executable_path=str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(0)
    site.screens.mkdir(exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def _shot(driver: Any, site: Site, name: str) -> None:
    driver.save_screenshot(str(site.screens / f"{name}.png"))


def _wait_text(driver: Any, css: str, text: str, timeout: float = 60) -> None:
    """Wait until ``css`` holds ``text`` (pages reload themselves; stale elements are looked up again)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(
        driver,
        timeout,
        poll_frequency=0.25,
        ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
    ).until(lambda d: text in d.find_element(By.CSS_SELECTOR, css).text)


def _follow(driver: Any, css: str) -> str:
    """Open the first link matching ``css`` on a page that may be reloading itself (read, then navigate)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    href = WebDriverWait(
        driver,
        20,
        poll_frequency=0.2,
        ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
    ).until(lambda d: d.find_element(By.CSS_SELECTOR, css).get_attribute("href"))
    driver.get(href)
    return str(href)


def _send_study(site: Site, datasets: list[Any], name: str) -> None:
    files = write_study(site.screens.parent / name, datasets)
    result = storescu(site.service.port, files)
    assert result.returncode == 0, result.stderr


def test_browser_login_study_forwarded_quarantine_fix_rule_replay(site: Site, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    driver.get(site.url + "/studies")
    assert driver.current_url.endswith("/login")
    _shot(driver, site, "01-login")
    driver.find_element(By.ID, "username").send_keys("alice")
    driver.find_element(By.ID, "password").send_keys("wrong password")
    driver.find_element(By.ID, "login").click()
    _wait_text(driver, "#login-error", "Wrong user name or password")
    driver.find_element(By.ID, "username").clear()
    driver.find_element(By.ID, "username").send_keys("alice")
    driver.find_element(By.ID, "password").send_keys(PASSWORDS["alice"])
    driver.find_element(By.ID, "login").click()
    _wait_text(driver, "#whoami", "alice (admin)")

    study = Study(accession="CANARYACC55", date="20110823", description="Canarydesc orthodontics")
    screenshot_obj = make_small_sc(patient=PATIENT, study=study)
    photo = make_vl_photo(
        _no_face_jpeg(site.screens.parent / "gradient.jpg"),
        patient=PATIENT,
        study=Study(accession="CANARYACC56", date="20110823", description="Canarydesc photo"),
    )
    site.canaries += [*_canaries(study, screenshot_obj, photo), str(photo.StudyInstanceUID), "CANARYACC56"]

    _send_study(site, [screenshot_obj], "study-sc")
    driver.get(site.url + "/studies")
    _wait_text(driver, "#studies tbody", "forwarded")  # the page reloads itself every 2 s
    _shot(driver, site, "02-studies-forwarded")
    _follow(driver, "#studies tbody a")
    _wait_text(driver, "main h1", "forwarded")
    assert "screenshots" in driver.find_element(By.CSS_SELECTOR, ".instance").text  # route in the trail
    _shot(driver, site, "03-trail-forwarded")

    _send_study(site, [photo], "study-photo")
    driver.get(site.url + "/quarantine")
    _wait_text(driver, "#quarantine tbody", "no-face-found", timeout=120)  # worker loads the face detector
    _shot(driver, site, "04-quarantine-list")
    item_url = _follow(driver, "#quarantine tbody a")
    _shot(driver, site, "05-quarantine-item")

    driver.get(site.url + "/rules")
    fixed = site.rules.read_text().replace("no_face: quarantine", "no_face: mask")
    text = driver.find_element(By.ID, "rules-text")
    text.clear()
    text.send_keys(fixed)
    driver.find_element(By.ID, "check").click()
    _wait_text(driver, "#check-result", "Valid: console-e2e")
    driver.find_element(By.ID, "save").click()
    _wait_text(driver, "#flash", "Saved rules console-e2e")
    wait_until(lambda: site.service.rules().routes[1].decision.pixels.no_face.value == "mask", 15)
    driver.get(site.url + "/rules")
    assert driver.find_element(By.ID, "rules-result").text == "reloaded"
    _shot(driver, site, "06-rules-saved")

    driver.get(item_url)
    driver.find_element(By.ID, "replay-reason").send_keys("rule fixed: no_face mask")
    driver.find_element(By.ID, "replay-confirm").click()
    driver.find_element(By.ID, "replay").click()
    driver.switch_to.alert.accept()  # the confirmation dialog of console.js
    _wait_text(driver, "#flash", "replay done")
    _shot(driver, site, "07-replayed")
    driver.get(item_url)  # this page reloads itself (not while it shows a message)
    _wait_text(driver, "#instance-state", "forwarded", timeout=90)
    _shot(driver, site, "08-replay-forwarded")

    driver.get(site.url + "/audit")
    assert "rule fixed: no_face mask" in driver.find_element(By.ID, "audit").text
    _shot(driver, site, "09-audit")
    driver.get(site.url + "/")
    _wait_text(driver, "#instance-states", "forwarded")
    _shot(driver, site, "10-overview")

    driver.get(site.url + "/rules/explain")  # an admin asks to see a file's own values: the upload's only
    driver.find_element(By.ID, "file").send_keys(str(site.screens.parent / "study-sc" / "000.dcm"))
    driver.find_element(By.ID, "explain").click()
    _wait_text(driver, "main", "Decision: forward by route")
    assert "Canaryname^Zqxwv" in driver.find_element(By.ID, "changes").text
    _shot(driver, site, "11-explain")
    assert len(list((site.config.data_dir / "research").glob("*.dcm"))) == 2
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE" and "401" not in e["message"]]
    assert errors == []  # no CSP violation, script error or missing resource (the 401 is the wrong password)


class Crawler:
    """Logs in over real HTTP and follows every same-site link (GET), recording each body and header."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        self.seen: dict[str, str] = {}

    def get(self, path: str) -> tuple[str, str]:
        with self.opener.open(self.base + path, timeout=30) as response:
            return response.read().decode("utf-8", "replace"), str(response.headers) + response.url

    def login(self, user: str) -> None:
        page, _ = self.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        data = urllib.parse.urlencode({"username": user, "password": PASSWORDS[user], "csrf_token": token})
        with self.opener.open(self.base + "/login", data=data.encode(), timeout=30) as response:
            assert f"{user} (" in response.read().decode()

    def crawl(self, start: list[str]) -> dict[str, str]:
        queue = list(start)
        while queue and len(self.seen) < 300:
            path = queue.pop(0)
            if path in self.seen:
                continue
            body, headers = self.get(path)
            self.seen[path] = path + "\n" + headers + "\n" + body
            for href in re.findall(r'(?:href|src)="(/[^"]*)"', body):
                href = href.replace("&amp;", "&")
                if href not in self.seen and not href.startswith(("/logout", "/login")):
                    queue.append(href)
        return self.seen


def test_no_canary_phi_on_any_page_url_or_header_for_admin_and_viewer(site: Site) -> None:
    if not site.canaries:  # run alone: send the canary study here
        study = Study(accession="CANARYACC57", date="20110823", description="Canarydesc alone")
        sc = make_small_sc(patient=PATIENT, study=study)
        site.canaries += _canaries(study, sc)
        _send_study(site, [sc], "study-phi")
        wait_until(lambda: site.service.ledger.counts().instances.get("forwarded"), 60)
    filters = ["/studies?state=forwarded", "/studies?since=24h", "/quarantine?all=1", "/studies?q=1"]
    pages: dict[str, str] = {}
    for user in ("alice", "victor"):
        crawler = Crawler(site.url)
        crawler.login(user)
        pages.update({f"{user}:{k}": v for k, v in crawler.crawl(["/", *filters]).items()})
    assert any("/studies/" in key for key in pages) and any("/quarantine/" in key for key in pages)
    assert any(":/static/console.js" in key for key in pages)
    leaks = [(key, c) for key, text in pages.items() for c in site.canaries if c.lower() in text.lower()]
    assert leaks == [], leaks[:5]
