"""harness — a minimal test runner: ok/not ok lines, then 'N passed, N failed'."""
import sys
import traceback

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def run(setup=None, teardown=None):
    passed = failed = 0
    ctx = setup() if setup else None
    try:
        for fn in TESTS:
            try:
                fn(ctx) if setup else fn()
                print("ok %s" % fn.__name__, flush=True)
                passed += 1
            except Exception as e:  # a failing assertion or an unexpected error
                print("not ok %s: %s" % (fn.__name__, e), flush=True)
                traceback.print_exc(file=sys.stdout)
                failed += 1
    finally:
        if teardown:
            teardown(ctx)
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 1 if failed else 0
