"""Real-browser tests: Debian's Chromium driven through Selenium, with a screenshot per step.

Fixtures (tests/conftest.py imports them, so every test module has them):

- ``test_ca`` (session): one throw-away CA (certificate, key) for the whole run. Servers the
  browser visits sign their certificate with it (``FakeOidc(folder, ca_pair=test_ca)``) and
  Chromium trusts exactly that CA's key (below), so pages load over real, verified TLS.
- ``chrome`` (session): one headless Chromium for the whole run, at ``DESKTOP`` size.
- ``browser`` (per test): a ``Browser`` around that driver that names screenshots after the
  test, starts at desktop size with no cookies, and saves a last screenshot at the end (the
  state a failing test stopped in).

Only the system's browser and driver are used (``/usr/bin/chromium``, ``/usr/bin/chromedriver``;
``BAS_CHROMIUM`` and ``BAS_CHROMEDRIVER`` override them). The driver's path is passed to
Selenium, which then skips Selenium Manager; ``SE_OFFLINE`` is set as well so nothing is ever
downloaded. When Chromium is missing or does not start, the browser tests FAIL saying why;
``BAS_SKIP_BROWSER=1`` skips them instead (on purpose, never by accident).

Chromium's flags, and why:

- ``--headless=new``: no display in CI; the new headless mode is the real browser (same
  rendering and window sizes), not the old separate implementation.
- ``--no-sandbox``: CI runs as root in a container; Chromium refuses to start its sandbox as
  root, and containers usually lack the user namespaces it needs. The pages are our own.
- ``--disable-dev-shm-usage``: containers mount a small ``/dev/shm`` (64 MB in Docker);
  Chromium then crashes on big pages. This puts that memory under ``/tmp``.
- ``--ignore-certificate-errors-spki-list=<hash>``: trusts certificate chains holding the
  tests' CA key (SHA-256 of its SubjectPublicKeyInfo), and nothing else: a certificate from
  any other CA is still refused. Chromium matches the pin against the certificates the server
  sends, so servers made with ``ca_pair`` send their certificate followed by the CA's.
  Chosen over ``--ignore-certificate-errors`` (which accepts anything, so a test could never
  catch a TLS mistake) and over importing the CA into an NSS database (needs ``certutil``
  and a private ``$HOME`` for the browser).
- ``--disable-background-networking``, ``--disable-component-update``, ``--disable-sync``:
  the browser talks only to the tests' servers on 127.0.0.1 (no update or service calls
  out of CI; the runs are the same offline).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

DESKTOP = (1280, 800)
PHONE = (390, 844)  # a common phone's CSS viewport (iPhone 12 to 14)
CHROMIUM = os.environ.get("BAS_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("BAS_CHROMEDRIVER", "/usr/bin/chromedriver")
MAX_TABS = 40  # Tab presses before giving up on reaching a control


def artifacts_dir() -> Path:
    """Where screenshots go: ``$BAS_TEST_ARTIFACTS`` or ``tests/artifacts`` (git-ignored)."""
    env = os.environ.get("BAS_TEST_ARTIFACTS")
    return Path(env) if env else Path(__file__).resolve().parent / "artifacts"


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} is missing: install Debian's {package} (scripts/test.sh does)"
    return None


def not_available(why: str) -> None:
    """Fail (or skip, only with BAS_SKIP_BROWSER=1) the browser test that cannot run."""
    if os.environ.get("BAS_SKIP_BROWSER") == "1":
        pytest.skip(f"BAS_SKIP_BROWSER=1: {why}")
    pytest.fail(f"browser tests cannot run: {why} (set BAS_SKIP_BROWSER=1 to skip them)", pytrace=False)


def spki_hash(ca_file: Path) -> str:
    """Base64 SHA-256 of the certificate's SubjectPublicKeyInfo (Chromium's SPKI pin format)."""
    cert = x509.load_pem_x509_certificate(ca_file.read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def chromium_options(ca_file: Path) -> webdriver.ChromeOptions:
    """Headless Chromium as root in a container, trusting the tests' CA (module docstring)."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        f"--window-size={DESKTOP[0]},{DESKTOP[1]}",
        f"--ignore-certificate-errors-spki-list={spki_hash(ca_file)}",
        "--lang=nb-NO",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ):
        options.add_argument(flag)
    return options


@pytest.fixture(scope="session")
def test_ca() -> Iterator[tuple[Path, Path]]:
    """One CA (certificate, key) for every server the session's browser visits."""
    folder = Path(tempfile.mkdtemp(prefix="bas-browser-ca-"))
    cert, key = folder / "ca.pem", folder / "ca.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=BAS browser test CA"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    yield cert, key
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def chrome(test_ca: tuple[Path, Path]) -> Iterator[webdriver.Chrome]:
    """The session's headless Chromium (fails with the reason when it cannot start)."""
    why = browser_missing()
    if why:
        not_available(why)
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager: never download
    try:
        driver = webdriver.Chrome(options=chromium_options(test_ca[0]), service=Service(CHROMEDRIVER))
    except WebDriverException as exc:
        not_available(f"Chromium did not start: {exc.msg or exc}")
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


class Browser:
    """The driver plus the helpers the tests use: keyboard, labels, waits, screenshots."""

    def __init__(self, driver: webdriver.Chrome, name: str, folder: Path) -> None:
        self.driver = driver
        self.folder = folder
        self.name = name
        self.size = "desktop"
        self.steps = 0
        self.shots: list[Path] = []

    def open(self, url: str) -> None:
        self.driver.get(url)

    @property
    def url(self) -> str:
        return str(self.driver.current_url)

    def shot(self, step: str) -> Path:
        """Save a screenshot of this step: ``<artifacts>/screenshots/<test>/NN-<step>-<size>.png``."""
        self.steps += 1
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", step).strip("-")
        path = self.folder / f"{self.steps:02d}-{slug}-{self.size}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not self.driver.save_screenshot(str(path)):
            raise AssertionError(f"screenshot not saved: {path}")
        self.shots.append(path)
        return path

    def _viewport(self, size: tuple[int, int], mobile: bool) -> None:
        """Set the page's viewport exactly (a headless window's size includes a simulated
        browser frame, so the window alone would give a smaller viewport)."""
        width, height = size
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
        )

    def desktop(self) -> None:
        """A desktop viewport (``DESKTOP``, 1280x800)."""
        self._viewport(DESKTOP, mobile=False)
        self.size = "desktop"

    def phone(self) -> None:
        """A phone's viewport (``PHONE``, 390x844, mobile emulation: the page's viewport meta applies)."""
        self._viewport(PHONE, mobile=True)
        self.size = "phone"

    def wait_for(self, css: str, timeout: float = 10) -> WebElement:
        """The visible element matching ``css``, waiting for it up to ``timeout`` seconds."""
        try:
            found: WebElement = WebDriverWait(self.driver, timeout).until(
                expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, css))
            )
        except TimeoutException:
            self.shot(f"timeout-{css}")
            raise AssertionError(f"no visible {css!r} after {timeout}s on {self.url}") from None
        return found

    def wait_until_url(self, prefix: str, timeout: float = 10) -> str:
        """Wait until the page's URL starts with ``prefix``; the URL."""
        try:
            WebDriverWait(self.driver, timeout).until(lambda d: d.current_url.startswith(prefix))
        except TimeoutException:
            raise AssertionError(f"still on {self.url} after {timeout}s, expected {prefix}") from None
        return self.url

    def labelled(self, label: str) -> WebElement:
        """The control a ``<label>`` with exactly this text labels (fails if unlabelled)."""
        labels = self.driver.find_elements(By.XPATH, "//label")
        for element in labels:
            if " ".join(element.text.split()) == label:
                control: WebElement | None = self.driver.execute_script(
                    "return arguments[0].control", element
                )
                assert control is not None, f"the label {label!r} is not tied to a control"
                return control
        raise AssertionError(f"no label {label!r} on {self.url} (labels: {[e.text for e in labels]})")

    def focused(self) -> WebElement:
        return self.driver.switch_to.active_element

    def press(self, *keys: str) -> None:
        """Press keys on whatever has the focus (``Keys.TAB``, ``Keys.ENTER``, text)."""
        ActionChains(self.driver).send_keys(*keys).perform()

    def tab_to(self, label: str) -> WebElement:
        """Press Tab until the control labelled ``label`` has the focus (proves it is reachable)."""
        control = self.labelled(label)
        for _ in range(MAX_TABS):
            if self.focused() == control:
                return control
            self.press(Keys.TAB)
        raise AssertionError(f"{MAX_TABS} Tab presses never reached the field {label!r}")

    def fill(self, label: str, text: str) -> WebElement:
        """Tab to the field labelled ``label``, clear it and type ``text``, keyboard only."""
        control = self.tab_to(label)
        ActionChains(self.driver).key_down(Keys.CONTROL).send_keys("a").key_up(Keys.CONTROL).perform()
        self.press(Keys.DELETE)
        self.press(text)
        assert control.get_attribute("value") == text, f"{label!r} holds {control.get_attribute('value')!r}"
        return control


@pytest.fixture()
def browser(chrome: webdriver.Chrome, request: pytest.FixtureRequest) -> Iterator[Browser]:
    """A clean desktop-size ``Browser`` for one test; a last screenshot is saved at its end."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-")
    b = Browser(chrome, name, artifacts_dir() / "screenshots" / name)
    shutil.rmtree(b.folder, ignore_errors=True)
    chrome.get("about:blank")
    chrome.execute_cdp_cmd("Network.clearBrowserCookies", {})  # every site's, not just the page's
    b.desktop()
    try:
        yield b
    finally:
        try:  # best effort: a crashed browser must not hide the test's own failure
            b.shot("end")
            b.desktop()
        except WebDriverException as exc:
            print(f"browser: no last screenshot for {name}: {exc.msg}")
