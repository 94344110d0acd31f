"""The web console in headless Chromium, through WebDriver (Selenium).

Run by tests/integration/console_web.rs against a gateway it started; every input
comes from the environment. Exits non-zero, saying what went wrong, on any failed
check. Waits are for conditions (WebDriverWait), with generous limits for a loaded
machine; nothing sleeps and hopes.
"""

import os
import subprocess
import sys

from selenium import webdriver
from selenium.common.exceptions import (NoSuchElementException,
                                        StaleElementReferenceException,
                                        WebDriverException)
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ENV = os.environ
BASE = ENV["CONSOLE_URL"]
TABLE = ENV["TABLE"]
SHOTS = ENV["SCREENSHOTS"]
APPROVER = ENV["APPROVER"]
RAW = ENV["RAW_VALUES"].split(",")
LIMIT = 60


def step(what):
    print(f"-- {what}", flush=True)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def psql(sql):
    """A psql session as the agent, in the background."""
    return subprocess.Popen(
        [ENV["PSQL"], ENV["AGENT_DSN"], "-X", "-w", "-v", "ON_ERROR_STOP=1",
         "-v", "VERBOSITY=verbose", "-c", sql],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(p, what):
    try:
        out, err = p.communicate(timeout=LIMIT)
    except subprocess.TimeoutExpired:
        p.kill()
        raise AssertionError(f"{what}: psql still waiting after {LIMIT}s")
    return p.returncode, out, err


# A page being replaced under a check (a navigation, the live list re-rendered) is
# "not yet", not a failure.
TRANSIENT = (NoSuchElementException, StaleElementReferenceException)


def wait(driver, cond, what):
    try:
        return WebDriverWait(driver, LIMIT, ignored_exceptions=TRANSIENT).until(
            lambda d: cond(d))
    except WebDriverException as e:
        raise AssertionError(f"waiting for {what}: {e}") from None


def shot(driver, name):
    driver.save_screenshot(os.path.join(SHOTS, f"{name}.png"))


def text(driver):
    return driver.find_element(By.TAG_NAME, "main").text


def pending_row(driver, marker):
    rows = driver.find_elements(
        By.XPATH, f"//tbody[@id='pending']/tr[contains(., '{marker}')]")
    return rows[0] if rows else None


def decide(driver, marker, reason, button):
    """Type the reason into the row's form and press its button; the live list may
    re-render the row meanwhile, so a stale row is found again and the typing redone."""
    def attempt(d):
        row = pending_row(d, marker)
        if row is None:
            return False
        box = row.find_element(By.XPATH, ".//input[@name='reason']")
        box.clear()
        box.send_keys(reason)
        row.find_element(By.XPATH, f".//button[contains(@class, '{button}')]").click()
        return True
    wait(driver, attempt, f"the {button} button of the {marker} row")


def post_without_csrf(driver, path, body):
    """A same-origin POST from the signed-in page: the cookie goes along, the CSRF
    token does not."""
    return driver.execute_async_script(
        """const done = arguments[arguments.length - 1];
        fetch(arguments[0], {method: 'POST', body: arguments[1],
              headers: {'Content-Type': 'application/x-www-form-urlencoded'}})
          .then(r => done(r.status), e => done(String(e)));""", path, body)


def main():
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
              "--disable-gpu", "--window-size=1366,900"]:
        opts.add_argument(a)
    driver = webdriver.Remote(command_executor=ENV["WEBDRIVER_URL"], options=opts)
    driver.set_script_timeout(LIMIT)
    try:
        run(driver)
    finally:
        driver.quit()


def run(driver):
    step("sign in with the admin token")
    driver.get(BASE + "/ui/")
    check(driver.current_url.endswith("/ui/signin"), driver.current_url)
    driver.find_element(By.ID, "token").send_keys("wrong")
    driver.find_element(By.ID, "name").send_keys(APPROVER)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait(driver, lambda d: "Wrong admin token." in text(d), "the refusal")
    driver.find_element(By.ID, "token").send_keys(ENV["ADMIN_TOKEN"])
    driver.find_element(By.ID, "name").send_keys(APPROVER)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait(driver, lambda d: d.current_url.endswith("/ui/approvals"), "the approvals page")
    check("Nothing is waiting for approval." in text(driver), text(driver))

    step("a held statement appears without a reload")
    driver.execute_script("window.__sameDocument = 'kept';")
    held = psql(f"UPDATE {TABLE} SET note = 'approve-marker' WHERE id = 1")
    wait(driver, lambda d: all(
        w in (pending_row(d, "approve-marker") or d.find_element(By.TAG_NAME, "body")).text
        for w in ["approve-marker", "agent-1", "postgres", "agent-writes-need-approval"]),
        "the held UPDATE with its identity, front door and rule")
    check(driver.execute_script("return window.__sameDocument") == "kept",
          "the page was reloaded")
    shot(driver, "approvals")

    step("approve it with a reason: psql completes")
    decide(driver, "approve-marker", "checked by the on-call DBA", "approve")
    wait(driver, lambda d: "Approved ap-" in text(d), "the approval's outcome")
    code, out, err = finished(held, "approved UPDATE")
    check(code == 0 and "UPDATE 1" in out, f"psql after approval: {code} {out} {err}")

    step("deny another with a reason: psql hears it")
    driver.execute_script("window.__sameDocument = 'kept';")
    held = psql(f"UPDATE {TABLE} SET note = 'deny-marker' WHERE id = 2")
    wait(driver, lambda d: pending_row(d, "deny-marker"), "the second held UPDATE")
    check(driver.execute_script("return window.__sameDocument") == "kept",
          "the page was reloaded")
    decide(driver, "deny-marker", "not during the freeze", "deny")
    wait(driver, lambda d: "Denied ap-" in text(d), "the denial's outcome")
    code, out, err = finished(held, "denied UPDATE")
    check(code != 0 and f"denied by {APPROVER}: not during the freeze" in err,
          f"psql after denial: {code} {out} {err}")

    step("rows never move under the pointer: a withdrawn request keeps its place")
    from selenium.webdriver.common.action_chains import ActionChains
    driver.get(BASE + "/ui/approvals")
    first = psql(f"UPDATE {TABLE} SET note = 'withdrawn-marker' WHERE id = 1")
    wait(driver, lambda d: pending_row(d, "withdrawn-marker"), "the first held UPDATE")
    ActionChains(driver).move_to_element(pending_row(driver, "withdrawn-marker")).perform()
    second = psql(f"UPDATE {TABLE} SET note = 'later-marker' WHERE id = 2")
    wait(driver, lambda d: pending_row(d, "later-marker"), "the second held UPDATE")
    first.kill()
    first.communicate()

    def retired(d):
        row = pending_row(d, "withdrawn-marker")
        return row is not None and "No longer pending." in row.text

    wait(driver, retired, "the withdrawn request marked where it was")
    rows = driver.find_elements(By.XPATH, "//tbody[@id='pending']/tr")
    check(len(rows) == 2 and "withdrawn-marker" in rows[0].text
          and "later-marker" in rows[1].text, [r.text for r in rows])
    check(not any(b.is_enabled() for b in rows[0].find_elements(By.TAG_NAME, "button")),
          "the withdrawn row's buttons still work")
    ActionChains(driver).move_to_element(driver.find_element(By.TAG_NAME, "h1")).perform()
    wait(driver, lambda d: pending_row(d, "withdrawn-marker") is None,
         "the withdrawn row gone once the pointer left the table")
    decide(driver, "later-marker", "not now", "deny")
    wait(driver, lambda d: "Denied ap-" in text(d), "the second request's denial")
    finished(second, "the denied second UPDATE")

    step("a POST without the CSRF token is refused")
    status = post_without_csrf(driver, "/ui/approvals/ap-none/approve", "reason=x")
    check(status == 403, f"CSRF-less POST answered {status}")
    status = post_without_csrf(driver, "/ui/sessions/s-1/terminate", "csrf=" + "0" * 64)
    check(status == 403, f"wrong-CSRF POST answered {status}")

    step("terminate a live session")
    sleeper = psql("SELECT pg_sleep(600) AS terminate_marker")

    def sleeper_row(d):
        d.get(BASE + "/ui/sessions")
        rows = d.find_elements(By.XPATH, "//tbody/tr[contains(., 'terminate_marker')]")
        return rows[0] if rows else None

    row = wait(driver, sleeper_row, "the sleeping session with its statement")
    shot(driver, "sessions")
    row.find_element(By.XPATH, ".//button[contains(., 'Terminate')]").click()
    wait(driver, lambda d: "terminated." in text(d), "the terminate outcome")
    code, out, err = finished(sleeper, "terminated session")
    check(code != 0 and "57P01" in err, f"psql after terminate: {code} {out} {err}")

    step("replay shows masked values and no raw ones")
    code, out, err = finished(
        psql(f"SELECT id, ssn AS replay_marker FROM {TABLE} ORDER BY id"), "SELECT")
    check(code == 0, f"SELECT: {out} {err}")
    for raw in RAW:
        check(raw not in out and raw[-4:] in out, f"psql saw {out}")

    def replay(d):
        d.get(BASE + "/ui/audit?identity=agent-1")
        links = [a.get_attribute("href") for a in
                 d.find_elements(By.XPATH, "//tbody/tr/td[1]/a")]
        for href in links[:4]:
            d.get(href)
            if "replay_marker" in text(d):
                return True
        return False

    driver.get(BASE + "/ui/audit")
    check("Chain verified" in text(driver), text(driver))
    shot(driver, "audit")
    wait(driver, replay, "the SELECT's session in the audit store")
    transcript = text(driver)
    for raw in RAW:
        check(raw not in transcript, f"raw {raw} in the replay")
        check(f"***-**-{raw[-4:]}" in transcript, f"masked {raw[-4:]} missing: {transcript}")
    check(driver.page_source.count(RAW[0]) == 0, "raw value in the page source")
    shot(driver, "replay")

    step("rules: file:line, validate a draft, explain")
    driver.get(BASE + "/ui/rules")
    check(ENV["RULES_FILE"] + ":2" in text(driver), text(driver))
    draft = driver.find_element(By.ID, "draft")
    draft.send_keys("rules: [ {id: x, action: nope} ]")
    driver.find_element(By.XPATH, "//form[@action='/ui/rules/validate']//button").click()
    wait(driver, lambda d: "action must be allow, block or approve" in text(d),
         "the draft's error")
    driver.find_element(By.ID, "sql").send_keys(f"DROP TABLE {TABLE}")
    driver.find_element(By.XPATH, "//form[@action='/ui/rules/explain']//button").click()
    wait(driver, lambda d: "no-drop" in d.find_element(By.CSS_SELECTOR, "pre.report").text,
         "the explain report")
    shot(driver, "rules")

    step("keyboard: the skip link leads to the main content")
    driver.get(BASE + "/ui/approvals")
    from selenium.webdriver.common.keys import Keys
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    focused = driver.switch_to.active_element
    check(focused.get_attribute("class") == "skip", "first Tab does not reach the skip link")

    step("sign out")
    driver.find_element(By.XPATH, "//form[@action='/ui/signout']//button").click()
    wait(driver, lambda d: d.current_url.endswith("/ui/signin"), "the sign-in page")
    driver.get(BASE + "/ui/approvals")
    check(driver.current_url.endswith("/ui/signin"), "still signed in after signing out")
    print("ok", flush=True)


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAILED: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
