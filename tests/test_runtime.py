"""dgsamp.runtime: process-level CPU settings that change speed, never results."""

from __future__ import annotations

import sys

import pytest

from dgsamp import runtime


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux's")
def test_keep_freed_memory_applies_on_glibc():
    assert runtime.keep_freed_memory() is True


def test_keep_freed_memory_changes_nothing_off_linux(monkeypatch):
    monkeypatch.setattr(runtime.sys, "platform", "darwin")
    assert runtime.keep_freed_memory() is False


def test_keep_freed_memory_without_a_c_library(monkeypatch):
    def missing(*args, **kwargs):
        raise OSError("no libc here")

    monkeypatch.setattr(runtime.sys, "platform", "linux")
    monkeypatch.setattr(runtime.ctypes, "CDLL", missing)
    assert runtime.keep_freed_memory() is False
