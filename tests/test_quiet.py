"""The stderr filter: native log lines dropped, everything else passed through at once."""

from __future__ import annotations

from facefuse.cli.quiet import NATIVE_LOG, could_become_native, split_pieces


def test_pieces_split_on_carriage_returns_and_newlines():
    pieces, rest = split_pieces(b"\rfusing 1/4\rfusing 2/4\nW0000 00:00:01.5 log\nerr")
    assert pieces == [b"\r", b"fusing 1/4\r", b"fusing 2/4\n", b"W0000 00:00:01.5 log\n"]
    assert rest == b"err"


def test_native_lines_are_recognised_and_ours_are_not():
    assert NATIVE_LOG.match(b"W0000 00:00:1795499121.557098    2939 inference_feedback.cc")
    assert NATIVE_LOG.match(b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
    assert NATIVE_LOG.match(b"WARNING: All log messages before absl::InitializeLog()")
    assert not NATIVE_LOG.match(b"error: no face found in the template\n")
    assert not NATIVE_LOG.match(b"Warning: something of ours\n")


def test_unfinished_pieces_wait_only_while_they_could_be_native():
    assert could_become_native(b"W00")
    assert could_become_native(b"INFO: Cr")
    assert not could_become_native(b"fusing:  14%")
    assert not could_become_native(b"error: ")
