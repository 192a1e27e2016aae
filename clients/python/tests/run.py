"""Runs the tests (unittest discovery in this directory) and, under Bazel, writes one
<testcase> per test to $XML_OUTPUT_FILE, so that test reports count each case."""

import os
import sys
import time
import unittest
from xml.sax.saxutils import quoteattr


class _Result(unittest.TextTestResult):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cases = []  # (test, seconds, kind, text)

    def startTest(self, test):
        self._started = time.monotonic()
        super().startTest(test)

    def _done(self, test, kind, text=""):
        self.cases.append((test, time.monotonic() - self._started, kind, text))

    def addSuccess(self, test):
        super().addSuccess(test)
        self._done(test, "ok")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._done(test, "failure", self.failures[-1][1])

    def addError(self, test, err):
        super().addError(test, err)
        self._done(test, "error", self.errors[-1][1])

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._done(test, "skipped", reason)


def _write_xml(path, cases, seconds):
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<testsuites tests="%d" time="%.3f">' % (len(cases), seconds),
             '<testsuite name="python_client" tests="%d">' % len(cases)]
    for test, t, kind, text in cases:
        cls, _, name = test.id().rpartition(".")
        attrs = 'name=%s classname=%s time="%.3f"' % (quoteattr(name), quoteattr(cls), t)
        if kind == "ok":
            lines.append("<testcase %s/>" % attrs)
        elif kind == "skipped":
            lines.append('<testcase %s result="skipped"><skipped message=%s/></testcase>'
                         % (attrs, quoteattr(text)))
        else:
            lines.append("<testcase %s><%s message=%s/></testcase>"
                         % (attrs, kind, quoteattr(text[-4000:])))
    lines += ["</testsuite>", "</testsuites>", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    suite = unittest.defaultTestLoader.discover(here, pattern="test_*.py", top_level_dir=here)
    if len(sys.argv) > 1:  # names of tests to run, e.g. test_placement.PlacementClientTest
        suite = unittest.defaultTestLoader.loadTestsFromNames(sys.argv[1:])
    start = time.monotonic()
    result = unittest.TextTestRunner(verbosity=2, resultclass=_Result).run(suite)
    if os.environ.get("XML_OUTPUT_FILE"):
        _write_xml(os.environ["XML_OUTPUT_FILE"], result.cases, time.monotonic() - start)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
