"""Running a snippet in a fresh interpreter: for the checks whose failure is a hang, a crash or
an abort, which must fail one test instead of killing the whole run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

# Every check here is given its own time limit; a hang fails the check when it runs out.
TIMEOUT = 120


def run_python(
    code: str, timeout: float = TIMEOUT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (dedented) with this interpreter; its output, stderr and exit status.

    A snippet that outlives ``timeout`` is killed and reported as exit status -9 with
    ``"TIMEOUT"`` in its stderr, so that the caller's assertion on the status fails.
    """
    environment = dict(os.environ if env is None else env)
    try:
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            env=environment,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as err:
        out = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
        stderr = err.stderr.decode() if isinstance(err.stderr, bytes) else (err.stderr or "")
        stderr += f"\nTIMEOUT after {timeout} s"
        return subprocess.CompletedProcess(err.cmd, -9, out, stderr)


def describe(done: subprocess.CompletedProcess[str]) -> str:
    """The exit status and the end of both streams, for an assertion's message."""
    out, err = done.stdout[-2000:], done.stderr[-3000:]
    return f"exit status {done.returncode}\nstdout:\n{out}\nstderr:\n{err}"
