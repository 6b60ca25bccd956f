"""Running a snippet in a fresh interpreter: for the checks whose failure is a hang, a crash or
an abort, which must fail one test instead of killing the whole run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

# Every check here is given its own time limit; a hang fails the check when it runs out.
TIMEOUT = 120


def start_python(code: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``code`` (dedented) with this interpreter, in a process group of its own (so that
    :func:`finish` can end any process it forked, too)."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ if env is None else env),
        start_new_session=os.name == "posix",
    )


def finish(
    process: subprocess.Popen[str], timeout: float = TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Wait for ``process``; its output, stderr and exit status. One that outlives ``timeout``
    is killed with every process of its group, and reported as exit status -9 with
    ``"TIMEOUT"`` in its stderr, so that the caller's assertion on the status fails."""
    try:
        out, err = process.communicate(timeout=timeout)
        status = process.returncode
    except subprocess.TimeoutExpired:
        _kill_group(process)
        out, err = process.communicate()
        status, err = -9, err + f"\nTIMEOUT after {timeout} s"
    if os.name == "posix":  # a forked child left hanging by a failed check goes too
        _kill_group(process)
    return subprocess.CompletedProcess(process.args, status, out, err)


def _kill_group(process: subprocess.Popen[str]) -> None:
    if os.name != "posix":
        process.kill()
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_python(
    code: str, timeout: float = TIMEOUT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (dedented) with this interpreter: see :func:`start_python`, :func:`finish`."""
    return finish(start_python(code, env), timeout)


def wait_for_line(process: subprocess.Popen[str], timeout: float = TIMEOUT) -> str:
    """The next line ``process`` prints (it must flush it), or "" once ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    if os.name == "posix":
        import selectors

        with selectors.DefaultSelector() as sel:
            sel.register(process.stdout, selectors.EVENT_READ)
            if not sel.select(max(0.0, deadline - time.monotonic())):
                return ""
    return process.stdout.readline()


def describe(done: subprocess.CompletedProcess[str]) -> str:
    """The exit status and the end of both streams, for an assertion's message."""
    out, err = done.stdout[-2000:], done.stderr[-3000:]
    return f"exit status {done.returncode}\nstdout:\n{out}\nstderr:\n{err}"
