#!/usr/bin/python3
"""Drives the Ferry window through the accessibility tree (at-spi, pyatspi).

Run by tests/gui/main.rs inside a private `dbus-run-session` on an Xvfb display:

    driver.py CONFIG.json

CONFIG names the scenario, the command to start Ferry and what to expect. The
driver starts Ferry itself, finds the window's widgets by role and name as a
screen reader would, clicks them, checks what they say, takes screenshots
(ImageMagick `import`), and stops Ferry with SIGTERM. It prints what it does; on
failure it prints why and the accessibility tree, and exits with status 1.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pyatspi

CONFIG = json.load(open(sys.argv[1]))
STARTED = time.monotonic()


def log(message):
    print(f"[{time.monotonic() - STARTED:6.2f}s] {message}", flush=True)


class Failure(Exception):
    pass


# ---- the accessibility tree ------------------------------------------------------


def children(node):
    try:
        count = node.childCount
    except Exception:
        return []
    out = []
    for i in range(count):
        try:
            child = node.getChildAtIndex(i)
        except Exception:
            continue
        if child is not None:
            out.append(child)
    return out


def walk(node):
    yield node
    for child in children(node):
        yield from walk(child)


def walk_visible(node):
    """Like walk, leaving out hidden widgets and everything in them (a stack's
    other pages report their own children as visible)."""
    if not showing(node):
        return
    yield node
    for child in children(node):
        yield from walk_visible(child)


def role(node):
    try:
        return node.getRoleName()
    except Exception:
        return ""


def name(node):
    try:
        return node.name or ""
    except Exception:
        return ""


def showing(node):
    # GTK 4.8 reports "visible" for widgets shown (and leaves hidden subtrees out);
    # only windows get "showing".
    try:
        return node.getState().contains(pyatspi.STATE_VISIBLE)
    except Exception:
        return False


def checked(node):
    try:
        return node.getState().contains(pyatspi.STATE_CHECKED)
    except Exception:
        return False


def value(node):
    try:
        return node.queryValue().currentValue
    except Exception:
        return None


def dump(node, depth=0, out=None):
    out = [] if out is None else out
    extra = "" if showing(node) else " (hidden)"
    v = value(node)
    if v is not None:
        extra += f" value={v:.3f}"
    out.append("  " * depth + f"[{role(node)}] {name(node)!r}{extra}")
    for child in children(node):
        dump(child, depth + 1, out)
    return out


def find_app():
    desktop = pyatspi.Registry.getDesktop(0)
    for app in children(desktop):
        if name(app) in ("ferry", "Ferry"):
            return app
    return None


def wait_for(what, check, timeout):
    """Calls `check` until it returns something true; returns that."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


class Window:
    def __init__(self, app):
        self.app = app

    def nodes(self):
        # The application itself is never "visible"; its windows are.
        if role(self.app) == "application":
            return (n for window in children(self.app) for n in walk_visible(window))
        return walk_visible(self.app)

    def labels(self):
        return [name(n) for n in self.nodes() if role(n) == "label"]

    def has_label(self, text):
        return any(text == label for label in self.labels())

    def list_named(self, list_name):
        for node in self.nodes():
            if role(node) == "list" and name(node) == list_name:
                return node
        return None

    def rows(self, list_name):
        """{row name: row} of a list's (showing) items."""
        found = self.list_named(list_name)
        if found is None:
            return {}
        return {
            name(row): row
            for row in children(found)
            if role(row) == "list item" and showing(row)
        }

    def row_texts(self, row):
        return [name(n) for n in walk(row) if role(n) == "label"]

    def row_progress(self, row):
        """The row's progress bar value, or None while it is hidden."""
        for node in walk(row):
            if role(node) == "progress bar":
                return value(node) if showing(node) else None
        return None

    def button(self, label):
        for node in self.nodes():
            if role(node) == "push button" and showing(node):
                # GTK 4.8 names buttons with a mnemonic "_Label Label".
                if name(node) == label or name(node).endswith(" " + label):
                    return node
        return None

    def click(self, node):
        action = node.queryAction()
        for i in range(action.nActions):
            if action.getName(i) == "click":
                action.doAction(i)
                return
        raise Failure(f"{name(node)!r} cannot be clicked")

    def mouse_click(self, node):
        x, y, w, h = node.queryComponent().getExtents(pyatspi.DESKTOP_COORDS)
        pyatspi.Registry.generateMouseEvent(x + w // 2, y + h // 2, "b1c")

    def check_box(self, row):
        for node in walk(row):
            if role(node) in ("check box", "radio button"):
                return node
        return None


# ---- helpers ---------------------------------------------------------------------


def screenshot(shot_name):
    directory = CONFIG.get("screenshots")
    if not directory:
        return
    path = os.path.join(directory, f"{shot_name}.png")
    tmp = path + ".tmp.png"
    subprocess.run(
        ["import", "-window", "root", "-strip",
         "-define", "png:exclude-chunks=date,time", tmp],
        check=True,
    )
    os.replace(tmp, path)
    log(f"screenshot {path}")


def run(argv):
    log("$ " + " ".join(argv))
    subprocess.run(argv, check=True)


def wait_status(win, titles, timeout):
    titles = [titles] if isinstance(titles, str) else titles
    found = wait_for(
        f"the status {titles}",
        lambda: next((t for t in titles if win.has_label(t)), None),
        timeout,
    )
    log(f"status: {found}")
    return found


def wait_rows(win, list_name, expected, timeout):
    """Waits until the list has rows named `expected` (a dict name -> words its
    subtitle must contain, or None)."""

    def ready():
        rows = win.rows(list_name)
        for row_name, words in expected.items():
            row = rows.get(row_name)
            if row is None:
                return None
            if words and not any(words in t for t in win.row_texts(row)):
                return None
        return rows

    rows = wait_for(f"rows {list(expected)} in {list_name!r}", ready, timeout)
    for row_name in expected:
        log(f"row {row_name!r}: {win.row_texts(rows[row_name])[1:]}")
    return rows


def download(win, list_name, rows_expected_active, update_label, ready_titles, shot):
    """Clicks Update, follows the per-source progress bars until the status says
    ready, and checks every one of `rows_expected_active` gave progress. Returns
    {row: [values seen]}."""
    win.click(wait_for("the Update button", lambda: win.button(update_label), 10))
    log("clicked Update")
    seen = {}
    shot_taken = False
    deadline = time.monotonic() + CONFIG.get("download_timeout", 120)
    while True:
        rows = win.rows(list_name)
        for row_name, row in rows.items():
            v = win.row_progress(row)
            if v is not None:
                values = seen.setdefault(row_name, [])
                if not values or values[-1] != v:
                    values.append(v)
        # The picture is worth taking once two sources have each given a fair part.
        giving = [r for r, values in seen.items() if values and values[-1] >= 0.15]
        if shot and not shot_taken and len(giving) >= 2:
            screenshot(shot)
            shot_taken = True
        if any(win.has_label(t) for t in ready_titles):
            if shot and not shot_taken:
                raise Failure(f"the download ended before two sources gave much: {seen}")
            break
        if time.monotonic() > deadline:
            raise Failure(f"the download did not finish; progress seen: {seen}")
        time.sleep(0.1)
    log(f"progress seen: { {r: [round(x, 3) for x in v] for r, v in seen.items()} }")
    for row_name in rows_expected_active:
        values = seen.get(row_name, [])
        if not values or max(values) <= 0:
            raise Failure(f"{row_name!r} showed no progress: {seen}")
    # A USB stick may give its part between two looks; the throttled servers
    # cannot, so the list must have been seen moving.
    if rows_expected_active and not any(len(values) >= 2 for values in seen.values()):
        raise Failure(f"no source's progress was seen moving: {seen}")
    return seen


# ---- scenarios -------------------------------------------------------------------


def scenario_demo(win):
    s = CONFIG["strings"]
    wait_status(win, s["available"], 90)
    rows = wait_rows(win, s["sources"], CONFIG["rows"], 30)
    if len(rows) != len(CONFIG["rows"]):
        raise Failure(f"expected rows {list(CONFIG['rows'])}, found {list(rows)}")
    # The demo's commits carry a size index, so the window says what is to download.
    wanted = CONFIG.get("download_line")
    if wanted:
        wait_for(
            f"a label ending in {wanted!r}",
            lambda: next((l for l in win.labels() if l.endswith(wanted)), None),
            10,
        )
    screenshot("update-available")
    seen = download(win, s["sources"], CONFIG["active_rows"], s["update"], [s["ready"]], "downloading")
    sharing = [r for r, values in seen.items() if max(values) > 0]
    if len(sharing) < 2:
        raise Failure(f"expected a download from several sources, got {seen}")
    wait_status(win, s["ready"], 10)
    screenshot("ready")
    wait_rows(win, s["sources"], CONFIG["rows_after"], 10)


def requested_objects():
    """Objects the test world's HTTP server was asked for so far."""
    with open(CONFIG["requests_log"], encoding="utf-8") as requests:
        return [line.strip() for line in requests if line.startswith("objects/")]


def scenario_usb(win):
    s = CONFIG["strings"]
    usb = CONFIG["usb"]
    wait_status(win, s["available"], 60)
    wait_rows(win, s["sources"], CONFIG["rows"], 30)

    def usb_row():
        rows = win.rows(s["sources"])
        return next((r for r in usb["names"] if r in rows), None)

    for attempt in (1, 2):
        run(["mount", "-o", "loop", usb["image"], usb["mount_point"]])
        t0 = time.monotonic()
        row_name = wait_for("the USB stick's row", usb_row, 2.0)
        log(f"USB stick {row_name!r} listed after {time.monotonic() - t0:.2f} s")
        if attempt == 2:
            break
        run(["umount", usb["mount_point"]])
        t0 = time.monotonic()
        wait_for("the USB stick's row to go", lambda: usb_row() is None, 2.0)
        log(f"USB stick gone after {time.monotonic() - t0:.2f} s")

    # Only the server, though the drive has the update too and, being a drive,
    # would be used first: the server's radio button, clicked with the mouse.
    server_name = CONFIG["server_row"]
    rows = win.rows(s["sources"])
    check = win.check_box(rows[server_name])
    win.mouse_click(check)
    wait_for("the server to be chosen", lambda: checked(check), 5)
    automatic = win.rows(s["choice"]).get(s["automatic"])
    if automatic is not None and checked(win.check_box(automatic)):
        raise Failure("Automatic is still chosen")
    log(f"chose {server_name!r} only")
    wait_status(win, s["available"], 10)
    requests_before = requested_objects()
    seen = download(win, s["sources"], [], s["update"], [s["ready"]], None)
    if row_name in seen:
        raise Failure(f"the drive was used though it was not chosen: {seen}")
    asked = requested_objects()[len(requests_before):]
    if not any(path.endswith(".filez") for path in asked):
        raise Failure(f"the chosen server was not asked for the files: {asked}")
    log(f"the server was asked for {len(asked)} objects, the drive for none")
    wait_status(win, s["ready"], 10)
    run(["umount", usb["mount_point"]])
    copy_to_usb(win, CONFIG["copy"])


def frame_action(frame, action_name):
    """Runs one of a window's actions (GTK lists them on the frame)."""
    action = frame.queryAction()
    for i in range(action.nActions):
        if action.getName(i) == action_name:
            action.doAction(i)
            return
    raise Failure(f"the window has no action {action_name!r}")


def copy_to_usb(win, copy):
    """"Copy Update to USB Stick…" onto a blank drive."""
    s = CONFIG["strings"]
    run(["mount", "-o", "loop", copy["image"], copy["mount_point"]])
    main = next(n for n in children(win.app) if role(n) == "frame" and name(n) == "Ferry")
    frame_action(main, "win.copy-to-usb")
    dialog = wait_for(
        "the copy dialog",
        lambda: next((n for n in children(win.app) if name(n) == s["copy_title"]), None),
        10,
    )
    log("the copy dialog is open")
    rows = wait_for(
        "the blank drive in the dialog",
        lambda: (lambda found: found if copy["name"] in found else None)(
            Window(dialog).rows(s["drives"])
        ),
        5,
    )
    log(f"drives: {list(rows)}")
    check = Window(dialog).check_box(rows[copy["name"]])
    Window(dialog).mouse_click(check)
    wait_for("the drive to be chosen", lambda: checked(check), 5)
    Window(dialog).click(wait_for("the Copy button", lambda: Window(dialog).button(s["copy"]), 5))
    log("clicked Copy")
    wait_for("the copy to finish", lambda: Window(dialog).has_label(s["copied"]), 60)
    log(f"status: {s['copied']}: {Window(dialog).labels()}")
    ref_file = os.path.join(copy["mount_point"], copy["ref_file"])
    try:
        with open(ref_file) as f:
            commit = f.read().strip()
    except OSError as error:
        listing = subprocess.run(["find", copy["mount_point"], "-maxdepth", "6", "-not", "-path", "*/objects/*"],
                                 capture_output=True, text=True).stdout
        raise Failure(f"{error}; the drive holds:\n{listing}")
    if commit != copy["commit"]:
        raise Failure(f"{ref_file} holds {commit}, not {copy['commit']}")
    log(f"the drive has {copy['ref_file']} = {commit[:12]}")
    run(["ostree", f"--repo={copy['mount_point']}/.ostree/repo", "fsck", "--quiet"])
    main_win = Window(dialog)
    main_win.click(wait_for("the Close button", lambda: main_win.button(s["close"]), 5))
    run(["umount", copy["mount_point"]])


def scenario_german(win):
    s = CONFIG["strings"]
    wait_status(win, s["available"], 60)
    wait_rows(win, s["sources"], CONFIG["rows"], 30)
    for text in CONFIG["labels"]:
        wait_for(f"the label {text!r}", lambda: win.has_label(text), 5)
        log(f"label {text!r}")
    if win.button(s["update"]) is None:
        raise Failure(f"no button {s['update']!r}")
    log(f"button {s['update']!r}")


def scenario_error(win):
    s = CONFIG["strings"]
    wait_status(win, s["error"], 60)
    for text in CONFIG["labels"]:
        wait_for(f"the label {text!r}", lambda: win.has_label(text), 5)
        log(f"label {text!r}")
    screenshot("error")


def menu_item(win, label):
    """Opens the main menu and clicks one of its items."""
    menu_button = wait_for(
        "the main menu button",
        lambda: next((n for n in win.nodes() if role(n) == "push button"
                      and role(next(iter(children(n)), None) or n) == "push button"), None),
        5,
    )
    win.click(next(iter(children(menu_button))))
    item = wait_for(
        f"the menu item {label!r}",
        lambda: next((n for n in win.nodes() if role(n) == "menu item" and name(n) == label), None),
        5,
    )
    win.click(item)
    log(f"menu: {label}")


def fetch(url):
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, len(response.read())
    except Exception as error:  # noqa: BLE001 - any failure means "not served"
        return None, str(error)


def scenario_share(win):
    s = CONFIG["strings"]
    wait_status(win, s["available"], 60)
    url = CONFIG["summary_url"]
    if fetch(url)[0] is not None:
        raise Failure(f"{url} answers before sharing is switched on")
    menu_item(win, s["preferences"])
    prefs = Window(wait_for(
        "the preferences window",
        lambda: next((n for n in children(win.app) if name(n) == s["preferences_title"]), None),
        10,
    ))

    def share_switch():
        return next((n for n in prefs.nodes() if role(n) in ("switch", "toggle button", "check box")
                     and name(n).startswith(s["share"])), None)

    switch = wait_for("the sharing switch", share_switch, 5)
    for want in (True, False):
        prefs.mouse_click(switch)
        wait_for(f"the switch to be {'on' if want else 'off'}", lambda: checked(switch) == want, 5)
        if want:
            status, size = wait_for(f"{url} to be served", lambda: (lambda r: r if r[0] == 200 else None)(fetch(url)), 10)
            log(f"sharing on: {url} answers {status} with {size} bytes")
        else:
            wait_for(f"{url} to stop", lambda: fetch(url)[0] is None, 10)
            log("sharing off: nothing answers")


def scenario_privacy(win):
    """The privacy switch for drives takes the stick off the list and back; the
    update then says where it came from, and the history lists it."""
    s = CONFIG["strings"]
    stick = CONFIG["stick_row"]
    wait_status(win, s["available"], 60)
    wait_rows(win, s["sources"], CONFIG["rows"], 30)
    menu_item(win, s["preferences"])
    prefs = Window(wait_for(
        "the preferences window",
        lambda: next((n for n in children(win.app) if name(n) == s["preferences_title"]), None),
        10,
    ))

    def drives_switch():
        return next((n for n in prefs.nodes() if role(n) in ("switch", "toggle button", "check box")
                     and name(n).startswith(s["drives_switch"])), None)

    switch = wait_for("the drives switch", drives_switch, 5)
    if not checked(switch):
        raise Failure("looking on drives is off by default")
    for want in (False, True):
        prefs.mouse_click(switch)
        wait_for(f"the switch to be {'on' if want else 'off'}", lambda: checked(switch) == want, 5)
        wait_for(
            f"the stick {'back on' if want else 'off'} the list",
            lambda: (stick in win.rows(s["sources"])) == want,
            20,
        )
        log(f"drives {'on' if want else 'off'}: the stick is {'listed' if want else 'gone'}")
    close = wait_for("the preferences' Close button", lambda: prefs.button(s["close"]), 5)
    prefs.click(close)
    wait_for("the preferences to close", lambda: not any(name(n) == s["preferences_title"] for n in children(win.app)), 10)
    wait_status(win, s["available"], 60)
    # The remote signs nothing, so the stick is used only when chosen by hand.
    check = win.check_box(win.rows(s["sources"])[stick])
    win.mouse_click(check)
    wait_for("the stick to be chosen", lambda: checked(check), 5)
    wait_status(win, s["available"], 10)
    download(win, s["sources"], [], s["update"], [s["ready"]], None)
    wait_status(win, s["ready"], 10)
    said = wait_for(
        "where the update came from",
        lambda: next((l for l in win.labels() if s["saved"] in l), None),
        10,
    )
    log(f"said: {said!r}")
    if s["from_stick"] not in said:
        raise Failure(f"the stick is not named in {said!r}")
    menu_item(win, s["history"])
    rows = wait_rows(win, s["history_list"], CONFIG["history_rows"], 10)
    log(f"history: {list(rows)}")


SCENARIOS = {
    "privacy": scenario_privacy,
    "demo": scenario_demo,
    "usb": scenario_usb,
    "german": scenario_german,
    "error": scenario_error,
    "share": scenario_share,
}


def main():
    env = dict(os.environ)
    env.update(CONFIG.get("env", {}))
    log("starting " + " ".join(CONFIG["command"]))
    ferry = subprocess.Popen(CONFIG["command"], env=env)
    app = None
    try:
        app = wait_for("Ferry on the accessibility bus", find_app, 30)
        win = Window(app)
        wait_for("the window", lambda: any(role(n) == "frame" for n in children(app)), 30)
        SCENARIOS[CONFIG["scenario"]](win)
        log("scenario passed")
        status = 0
    except Exception as error:  # noqa: BLE001 - report everything
        print(f"FAILED: {type(error).__name__}: {error}", flush=True)
        if app is not None:
            print("\n".join(dump(app)), flush=True)
        status = 1
    finally:
        if ferry.poll() is None:
            ferry.send_signal(signal.SIGTERM)
            try:
                ferry.wait(15)
            except subprocess.TimeoutExpired:
                ferry.kill()
                ferry.wait()
        log(f"ferry exited with {ferry.returncode}")
    if status == 0 and ferry.returncode not in (0, -signal.SIGTERM):
        print(f"FAILED: ferry exited with {ferry.returncode}", flush=True)
        status = 1
    sys.exit(status)


if __name__ == "__main__":
    main()
