"""Running a snippet in a fresh interpreter: for the checks whose failure is a hang, a crash or
an abort, which must fail one test instead of killing the whole run."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading

# Every check here is given its own time limit; a hang fails the check when it runs out.
TIMEOUT = 120


class Child:
    """``code`` (dedented) running in this interpreter's executable, in a process group of its
    own (so that :meth:`finish` can end any process it forked, too). Its output is read line by
    line as it comes, for :meth:`next_line`."""

    def __init__(self, code: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ if env is None else env),
            start_new_session=os.name == "posix",
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self._out: list[str] = []
        self._err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self._out, True)),
            threading.Thread(target=self._read, args=(self.process.stderr, self._err, False)),
        ]
        for reader in self._readers:
            reader.daemon = True
            reader.start()

    def _read(self, stream: object, into: list[str], lines: bool) -> None:
        for line in stream:  # type: ignore[attr-defined]
            into.append(line)
            if lines:
                self._lines.put(line)
        if lines:
            self._lines.put("")  # the end of its output

    def next_line(self, timeout: float = TIMEOUT) -> str:
        """The next line it prints (it must flush it); "" at the end of its output, or once
        ``timeout`` passes."""
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            return ""

    def wait_for(self, expected: str, timeout: float = TIMEOUT) -> bool:
        """Skip lines until one equals ``expected`` (without its newline): False if none does
        before the output ends or ``timeout`` passes."""
        while True:
            line = self.next_line(timeout)
            if not line:
                return False
            if line.rstrip("\n") == expected:
                return True

    def send_signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def finish(self, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Wait for it; its output, stderr and exit status. One that outlives ``timeout`` is
        killed with every process of its group, and reported as exit status -9 with
        ``"TIMEOUT"`` in its stderr, so that the caller's assertion on the status fails."""
        try:
            status = self.process.wait(timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        self._kill_group()  # and any process it forked and left behind
        if timed_out:
            self.process.wait()
            status = -9
        for reader in self._readers:
            reader.join(10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        err = "".join(self._err) + (f"\nTIMEOUT after {timeout} s" if timed_out else "")
        return subprocess.CompletedProcess(self.process.args, status, "".join(self._out), err)

    def _kill_group(self) -> None:
        if os.name != "posix":
            if self.process.poll() is None:
                self.process.kill()
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def run_python(
    code: str, timeout: float = TIMEOUT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (dedented) to its end: see :class:`Child`."""
    return Child(code, env).finish(timeout)


def describe(done: subprocess.CompletedProcess[str]) -> str:
    """The exit status and the end of both streams, for an assertion's message."""
    out, err = done.stdout[-2000:], done.stderr[-3000:]
    return f"exit status {done.returncode}\nstdout:\n{out}\nstderr:\n{err}"
