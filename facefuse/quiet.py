"""Keep the native libraries' log lines off the user's terminal.

MediaPipe's C++ side (absl, TFLite) writes warnings straight to file descriptor 2 from its
own threads, before any setting can reach its logger. The CLI and the WebUI own their
process, so they route fd 2 through a filter that drops those lines and passes the rest.
"""

from __future__ import annotations

import os
import re
import sys
import threading

NATIVE_LOG = re.compile(
    rb"(?:^|(?<=\r))(?:[IWE]\d{4} \d\d:\d\d:\d\d|INFO: Created TensorFlow Lite|"
    rb"WARNING: All log messages before absl)")


class NativeLogFilter:
    """Context manager: while active, native log lines on fd 2 are dropped."""

    def __init__(self) -> None:
        self._saved: int | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> NativeLogFilter:
        try:
            fd = sys.stderr.fileno()
        except (AttributeError, OSError, ValueError):
            return self
        sys.stderr.flush()
        read_end, write_end = os.pipe()
        self._saved = os.dup(fd)
        os.dup2(write_end, fd)
        os.close(write_end)
        self._thread = threading.Thread(target=self._pump, args=(read_end, self._saved),
                                        daemon=True)
        self._thread.start()
        return self

    @staticmethod
    def _pump(read_end: int, out_fd: int) -> None:
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:
                # A progress bar's "\r" updates share a line with what follows them.
                found = NATIVE_LOG.search(line)
                if found:
                    line = line[:found.start()]
                if line:
                    os.write(out_fd, line)

    def __exit__(self, *exc: object) -> None:
        if self._saved is None:
            return
        sys.stderr.flush()
        fd = sys.stderr.fileno()
        os.dup2(self._saved, fd)  # closes the pipe's last writer: the pump sees EOF
        if self._thread is not None:
            self._thread.join(timeout=2)
        os.close(self._saved)
        self._saved = None
