import pytest

from phenomena import runtime


def test_retain_freed_memory_reports_what_it_did(monkeypatch):
    monkeypatch.setenv("PHENOMENA_SYSTEM_MALLOC", "1")
    assert runtime.retain_freed_memory() is False
    assert runtime.allocator_status() == "system (PHENOMENA_SYSTEM_MALLOC is set)"
    monkeypatch.delenv("PHENOMENA_SYSTEM_MALLOC")
    applied = runtime.retain_freed_memory()
    if applied:
        assert runtime.allocator_status() == "retain-freed"
    else:  # off glibc Linux: the status names the reason, never claims to retain
        assert runtime.allocator_status().startswith("system (") and "PHENOMENA_SYSTEM_MALLOC" not in \
            runtime.allocator_status()
    assert runtime.retain_freed_memory() is applied  # idempotent


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_retain_freed_memory_applies_on_glibc_linux(monkeypatch):
    monkeypatch.delenv("PHENOMENA_SYSTEM_MALLOC", raising=False)
    assert runtime.retain_freed_memory() is True
    assert runtime.allocator_status() == "retain-freed"
