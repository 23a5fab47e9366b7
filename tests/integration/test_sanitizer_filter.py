"""hoteld_fixture.sanitizer_reports() against real LeakSanitizer reports.

Small programs built here with ASan leak reply-like messages the way
nanomsg/nng#1713 does (an nng_msg from nng_msg_alloc() called in a file
named src/rpc/envelope.c), or leak something else; the filter must set
aside only the first kind, only up to NNG1713_MAX_MESSAGES messages, and
only with a libnng that has the bug.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Tuple

import pytest

from hoteld_fixture import NNG1713_FIXED_IN, NNG1713_MAX_MESSAGES, libnng_version, sanitizer_reports

LEAK_MAIN = r"""
#include <stdlib.h>
#include <string.h>
#include <nng/nng.h>
nng_msg *make_reply(void);
void *volatile keep;
int main(int argc, char **argv) {
	int n = atoi(argv[1]);
	for (int i = 0; i < n; i++) {
		keep = make_reply(); /* each overwrites the last: leaked */
	}
	if (argc > 2) { /* a leak of our own, beside them */
		keep = malloc(64);
		memset(keep, 1, 64);
	}
	keep = NULL;
	return 0;
}
"""
ENVELOPE = r"""
#include <nng/nng.h>
nng_msg *make_reply(void) {
	nng_msg *m = NULL;
	nng_msg_alloc(&m, 100);
	return m;
}
"""


@pytest.fixture(scope="module")
def leaker(tmp_path_factory: pytest.TempPathFactory) -> str:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.fail("no C compiler: the ASan build of make test needs one")
    d = tmp_path_factory.mktemp("lsan")
    os.makedirs(d / "src" / "rpc")
    (d / "main.c").write_text(LEAK_MAIN)
    (d / "src" / "rpc" / "envelope.c").write_text(ENVELOPE)
    subprocess.run([cc, "-g", "-O0", "-fsanitize=address", "-o", "leaker", "main.c",
                    "src/rpc/envelope.c", "-lnng"], cwd=d, check=True)
    return str(d / "leaker")


def run(leaker: str, messages: int, own_leak: bool = False) -> Tuple[str, int]:
    args = [leaker, str(messages)] + (["own"] if own_leak else [])
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1")
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, timeout=60)
    return p.stdout.decode(errors="replace"), p.returncode


def test_lost_replies_are_set_aside_only_where_libnng_has_the_bug(leaker: str) -> None:
    log, rc = run(leaker, NNG1713_MAX_MESSAGES)
    assert "ERROR: LeakSanitizer" in log and rc != 0, log
    reports, note = sanitizer_reports(log, leaker)
    nng = libnng_version(leaker)
    print("libnng %s: reports %s, note %r" % (nng, reports, note[:80]))
    if nng < NNG1713_FIXED_IN:
        assert reports == [] and "nanomsg/nng#1713" in note, (reports, note)
    else:
        assert reports == ["ERROR: LeakSanitizer"] and note == "", (reports, note)


def test_more_lost_replies_than_the_bug_makes_still_fail(leaker: str) -> None:
    log, _ = run(leaker, NNG1713_MAX_MESSAGES + 2)
    reports, note = sanitizer_reports(log, leaker)
    assert reports == ["ERROR: LeakSanitizer"] and note == "", log


def test_a_leak_of_our_own_beside_them_still_fails(leaker: str) -> None:
    log, _ = run(leaker, 1, own_leak=True)
    assert "main.c" in log, log
    reports, note = sanitizer_reports(log, leaker)
    assert reports == ["ERROR: LeakSanitizer"] and note == "", log
