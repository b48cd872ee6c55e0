"""How the W&B mode is chosen: never a prompt, never a hang."""

import time

import pytest

from charlm.train import wandb_probe
from charlm.train.wandb_logger import WandbUnavailableError, resolve_mode


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    for var in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_MODE", "WANDB_BASE_URL", "WANDB_HTTPS_PROXY",
                "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    monkeypatch.setattr(wandb_probe, "_RECENT", {})


def test_without_credentials_it_goes_offline_and_says_why(no_credentials):
    mode, reason = resolve_mode("auto")
    assert mode == "offline" and "wandb login" in reason


def test_netrc_credentials_for_an_unreachable_server_go_offline_quickly(no_credentials, monkeypatch, tmp_path):
    (tmp_path / "netrc").write_text("machine 127.0.0.1\n  login user\n  password x\n")
    monkeypatch.setenv("WANDB_BASE_URL", "https://127.0.0.1:9")  # the netrc host; nothing listens on port 9
    start = time.monotonic()
    mode, reason = resolve_mode("auto")
    assert mode == "offline" and "cannot be reached" in reason
    assert time.monotonic() - start < 10


def test_explicit_choices_win(no_credentials, monkeypatch):
    assert resolve_mode("disabled")[0] == "disabled"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode("auto")[0] == "disabled"
    assert resolve_mode("offline")[0] == "offline"  # mode= beats WANDB_MODE, as in wandb.init
    monkeypatch.setenv("WANDB_MODE", "dryrun")  # W&B's old name for offline
    assert resolve_mode("auto")[0] == "offline"


def test_online_is_checked_before_it_is_used(no_credentials, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "online")
    with pytest.raises(WandbUnavailableError, match=r"\(WANDB_MODE=online\) but no W&B credentials"):
        resolve_mode("auto")
    with pytest.raises(WandbUnavailableError, match=r"\(mode=online\) but no W&B credentials"):
        resolve_mode("online")
    monkeypatch.setenv("WANDB_MODE", "onlien")
    with pytest.raises(ValueError, match="WANDB_MODE=onlien is not a W&B mode; use online, offline or disabled"):
        resolve_mode("auto")
