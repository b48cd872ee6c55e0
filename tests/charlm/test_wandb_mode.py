"""How the W&B mode is chosen: never a prompt, never a hang."""

import time

import pytest

from charlm import wandb_logger
from charlm.wandb_logger import resolve_mode


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    for var in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_MODE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))


def test_without_credentials_it_goes_offline_and_says_why(no_credentials):
    mode, reason = resolve_mode("auto")
    assert mode == "offline" and "wandb login" in reason


def test_netrc_credentials_for_an_unreachable_server_go_offline_quickly(no_credentials, monkeypatch, tmp_path):
    (tmp_path / "netrc").write_text("machine 127.0.0.1\n  login user\n  password x\n")
    monkeypatch.setenv("WANDB_BASE_URL", "https://127.0.0.1:9")  # the netrc host; nothing listens on 443
    start = time.monotonic()
    mode, reason = resolve_mode("auto")
    assert mode == "offline" and "cannot be reached" in reason
    assert time.monotonic() - start < 10


def test_explicit_choices_win(no_credentials, monkeypatch):
    assert resolve_mode("disabled")[0] == "disabled"
    monkeypatch.setenv("WANDB_MODE", "online")
    assert resolve_mode("auto")[0] == "online"
    assert wandb_logger.has_credentials() is False
