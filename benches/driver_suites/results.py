"""results.py - turn a suite's own output into one 'STATUS<TAB>test id' line per test.

  results.py junit FILE.xml          pytest --junitxml
  results.py mocha FILE.json         mocha --reporter json
  results.py pgfile NAME OUT RC      one node-postgres test file: its output, exit code
  results.py compare DIRECT MOAT SUITE [DOCUMENTED.tsv [RERUN]]
                                     tests passing in DIRECT and not in MOAT, then totals
  results.py candidates DIRECT MOAT SUITE [DOCUMENTED.tsv]
                                     the ids of those tests (not documented), one a line

STATUS is pass, fail, skip (skipped, xfail, pending) or xpass.
"""

import json
import re
import sys
import xml.etree.ElementTree as ET


def junit(path):
    for case in ET.parse(path).getroot().iter("testcase"):
        cls, name, file = case.get("classname", ""), case.get("name", ""), case.get("file")
        if file:  # junit_family=xunit1: the pytest node id
            module = file[: -len(".py")].replace("/", ".")
            klass = cls[len(module) + 1 :] if cls.startswith(module + ".") else ""
            tid = "::".join([file] + ([klass.replace(".", "::")] if klass else []) + [name])
        else:
            tid = cls.replace(".", "/") + ".py::" + name if cls else name
        status = "pass"
        for child in case:
            if child.tag in ("failure", "error"):
                status = "fail"
                break
            if child.tag == "skipped":
                status = "skip"
        # a test that passed but errored in teardown has two entries: fail wins
        yield status, tid


def mocha(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    data = json.loads(text[text.index("{"):])
    seen = {}
    for key, status in (("passes", "pass"), ("pending", "skip"), ("failures", "fail")):
        for t in data.get(key, []):
            seen[t.get("file", "").rsplit("/", 1)[-1] + "::" + t["fullTitle"]] = status
    return [(s, t) for t, s in seen.items()]


PASS = re.compile(r"^\s*(.*?) ✔$")
FAIL = re.compile(r"^\s*(.*?) FAILED!$")
SKIP = re.compile(r"^\s*(.*?) \? - SKIPPED$")


def pgfile(name, out, rc):
    """node-postgres's own runner: '  name ✔' per test, '  name FAILED!' and exit -1 at
    the first failure (the rest of the file does not run). A file with no tests of
    its own (quick-disconnect) counts as one test: its exit code."""
    results = []
    with open(out, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            for rx, status in ((PASS, "pass"), (FAIL, "fail"), (SKIP, "skip")):
                m = rx.match(line)
                if m:
                    results.append((status, f"{name}::{m.group(1)}"))
                    break
    if int(rc) != 0 and not any(s == "fail" for s, _ in results):
        results.append(("fail", f"{name}::(exit code {rc})" if results else f"{name}"))
    elif not results:
        results.append(("pass", name))
    return results


def load(path):
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            status, _, tid = line.rstrip("\n").partition("\t")
            if out.get(tid) != "fail":  # pytest reports a teardown error as a 2nd entry
                out[tid] = status
    return out


def totals(res):
    c = {k: 0 for k in ("pass", "fail", "skip", "xpass")}
    for s in res.values():
        c[s] = c.get(s, 0) + 1
    return c


def documented(path, suite):
    """(regex, reason) for the tests of `suite` that differ by design (SPEC.md)."""
    out = []
    if path:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip() and not line.startswith("#"):
                    s, rx, reason = line.rstrip("\n").split("\t", 2)
                    if s == suite:
                        out.append((re.compile(rx), reason))
    return out


def candidates(direct_path, moat_path, suite, documented_path=None):
    """Tests that pass directly, not through pgmoat, and differ for no documented reason."""
    d, m = load(direct_path), load(moat_path)
    known = documented(documented_path, suite)
    differ = sorted(t for t, s in d.items() if s == "pass" and m.get(t) != "pass")
    return d, m, known, differ


def compare(direct_path, moat_path, suite, documented_path=None, rerun_path=None):
    d, m, known, differ = candidates(direct_path, moat_path, suite, documented_path)
    again = load(rerun_path) if rerun_path else {}
    regress = []
    flaky = 0
    for t in differ:
        why = next((r for rx, r in known if rx.search(t)), None)
        if why:
            print(f"  documented {suite}: {t}  (through pgmoat: {m.get(t, 'not run')}; {why})")
        elif again.get(t) == "pass":
            flaky += 1
            print(f"  flaky {suite}: {t}  (through pgmoat: {m.get(t, 'not run')}, then passed on a second run)")
        else:
            regress.append(t)
    fixed = sorted(t for t, s in m.items() if s == "pass" and d.get(t) not in ("pass", None))
    for t in regress:
        print(f"  REGRESSION {suite}: {t}  (through pgmoat: {m.get(t, 'not run')})")
    for t in fixed:
        print(f"  (passes only through pgmoat) {suite}: {t}  (directly: {d.get(t)})")
    cd, cm = totals(d), totals(m)
    print(
        f"{suite}: direct {cd['pass']} passed, {cd['fail']} failed, {cd['skip']} skipped;"
        f" through pgmoat {cm['pass']} passed, {cm['fail']} failed, {cm['skip']} skipped;"
        f" {len(regress)} pass directly and not through pgmoat"
        f" (+{len(differ) - len(regress) - flaky} documented differences, {flaky} flaky)"
    )
    return len(regress)


def main(argv):
    cmd = argv[1]
    if cmd == "compare":
        n = compare(argv[2], argv[3], argv[4], *argv[5:7])
        sys.exit(1 if n else 0)
    if cmd == "candidates":
        d, m, known, differ = candidates(argv[2], argv[3], argv[4], *argv[5:6])
        for t in differ:
            if not any(rx.search(t) for rx, _ in known):
                print(t)
        return
    if cmd == "junit":
        rows = junit(argv[2])
    elif cmd == "mocha":
        rows = mocha(argv[2])
    elif cmd == "pgfile":
        rows = pgfile(argv[2], argv[3], argv[4])
    else:
        sys.exit(f"unknown command {cmd}")
    for status, tid in rows:
        print(f"{status}\t{tid}")


if __name__ == "__main__":
    main(sys.argv)
