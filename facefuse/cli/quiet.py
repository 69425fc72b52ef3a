"""Keep the native libraries' log lines off the user's terminal.

MediaPipe's C++ side (absl, TFLite) writes warnings straight to file descriptor 2 from its
own threads, before any setting can reach its logger. The CLI and the WebUI own their
process, so they route fd 2 through a filter that drops those lines and passes the rest at
once (progress bars, which redraw with "\\r" and no newline, included).
"""

from __future__ import annotations

import os
import re
import sys
import threading

NATIVE_LOG = re.compile(rb"(?:[IWE]\d{4} \d\d:\d\d:\d\d|INFO: Created TensorFlow Lite|"
                        rb"WARNING: All log messages before absl)")
_LITERALS = (b"INFO: Created TensorFlow Lite", b"WARNING: All log messages before absl")
_GLOG_SHAPE = b"L0000 00:00:00"  # L: one of I, W, E; 0: a digit


def could_become_native(piece: bytes) -> bool:
    """True while an unfinished piece is still the start of a native log line."""
    if any(lit.startswith(piece) or piece.startswith(lit) for lit in _LITERALS):
        return True
    for have, shape in zip(piece, _GLOG_SHAPE, strict=False):
        if shape == ord("L"):
            ok = have in b"IWE"
        elif shape == ord("0"):
            ok = 48 <= have <= 57
        else:
            ok = have == shape
        if not ok:
            return False
    return True


_PIECE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)?")


def split_pieces(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Complete pieces (each ending in \\r or \\n) and the unfinished rest."""
    pieces = [p for p in _PIECE.findall(buffer) if p]
    if pieces and not pieces[-1].endswith((b"\r", b"\n")):
        return pieces[:-1], pieces[-1]
    return pieces, b""


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
        pending = b""
        while True:
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            pieces, pending = split_pieces(pending + chunk)
            for piece in pieces:
                if not NATIVE_LOG.match(piece):
                    os.write(out_fd, piece)
            if pending and not could_become_native(pending):
                os.write(out_fd, pending)  # cannot become a native line: show it now
                pending = b""
        if pending and not NATIVE_LOG.match(pending):
            os.write(out_fd, pending)
        os.close(read_end)

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
