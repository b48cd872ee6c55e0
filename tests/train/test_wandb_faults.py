"""W&B and run folders when things are not as planned (issue 10, items 10-14): W&B switched off,
online asked for but impossible, a run folder that cannot be written, a resumed run, a proxy.

Real components throughout: the CLI in this process, real offline W&B runs, a real HTTP server and
a real CONNECT proxy on 127.0.0.1 (nothing here reaches another address).
"""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest
import torch
import wandb

from charlm.train.wandb_logger import offline_parts, resolve_mode
from charlm.train.wandb_probe import probe_server
from tests.cli_runs import keeping_sigint, small_run, with_callback

# limit_val_batches 2, not 1: Lightning reads 1 as 100%
TINY = ["--trainer.max_steps", "4", "--trainer.log_every_n_steps", "1", "--trainer.val_check_interval", "2",
        "--trainer.limit_val_batches", "2", "--data.eval_batch_size", "4"]


@pytest.fixture
def env(monkeypatch, tmp_path):
    """No W&B credentials, mode, proxy or server from the machine: each test sets its own."""
    for var in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_MODE", "WANDB_BASE_URL", "WANDB_INIT_TIMEOUT",
                "WANDB_HTTPS_PROXY", "WANDB_HTTP_PROXY"):
        monkeypatch.delenv(var, raising=False)
    for var in ("https_proxy", "http_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.upper(), raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setattr("charlm.train.wandb_probe._RECENT", {})  # no probe answer from another test
    return monkeypatch


@pytest.fixture
def cli(charlm_main):
    """``charlm`` in this process (in tmp_path), finishing any W&B run it leaves open."""

    def call(*args):
        with keeping_sigint():  # Lightning ignores Ctrl-C after an interrupt
            try:
                return charlm_main(*args)
            finally:
                wandb.finish()
                wandb.teardown()  # W&B keeps the environment it first saw (server, key) until torn down

    return call


def temp_wandb_runs() -> set[str]:
    """W&B run folders in the system temp folder (where wandb falls back when it cannot write)."""
    folder = Path(tempfile.gettempdir()) / "wandb"
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("charlm: error: "), stderr
    assert "Traceback" not in stderr, stderr
    return lines[-1]


# --- item 10: W&B off ---------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["WANDB_MODE=disabled", "--trainer.logger.mode=disabled", "--trainer.logger=false"])
def test_wandb_can_be_turned_off_and_training_goes_on(env, cli, tmp_path, shakespeare_path, how):
    before = temp_wandb_runs()
    extra = [how] if how.startswith("--") else []
    if how.startswith("WANDB_MODE"):
        env.setenv("WANDB_MODE", "disabled")
    out = cli(*small_run(shakespeare_path, *TINY, *extra,
                         *with_callback("charlm.callbacks.TokensPerSecond", every_n_steps=2)))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "----- step 4 (epoch 0, val bpc" in out.stdout  # the sampling callback still prints
    assert list((tmp_path / "runs").rglob("last.ckpt"))
    assert not (tmp_path / "runs" / "wandb").exists() and temp_wandb_runs() == before  # no W&B run anywhere
    if how != "--trainer.logger=false":  # the CSV logger still has everything, samples and pages too
        run = tmp_path / "runs" / "shakespeare" / "version_0"
        metrics = (run / "metrics.csv").read_text()
        assert "lr-AdamW" in metrics and "train/tokens_per_sec" in metrics and "val/bpc" in metrics
        assert (run / "samples.jsonl").is_file() and list((run / "neurons").glob("step-*.html"))


# --- item 11: online asked for, and impossible ------------------------------------------------------
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_online_without_credentials_is_one_line(env, cli, shakespeare_path):
    env.setenv("WANDB_MODE", "online")
    out = cli(*small_run(shakespeare_path, *TINY))
    assert out.returncode == 2
    line = one_error_line(out.stderr)
    assert "W&B online mode was asked for (WANDB_MODE=online) but no W&B credentials were found" in line
    assert "wandb login" in line and "WANDB_API_KEY" in line and "WANDB_MODE=offline" in line


def test_online_with_an_unreachable_server_is_one_line(env, cli, shakespeare_path):
    env.setenv("WANDB_API_KEY", "k" * 40)
    env.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    out = cli(*small_run(shakespeare_path, *TINY, "--trainer.logger.mode", "online"))
    assert out.returncode == 2
    line = one_error_line(out.stderr)
    assert "W&B online mode was asked for (mode=online) but the W&B server 127.0.0.1" in line
    assert "cannot be reached" in line and "--trainer.logger.mode offline" in line


class Refusing(http.server.BaseHTTPRequestHandler):
    """A W&B server that answers every request with 401 Unauthorized (a wrong API key)."""

    def _refuse(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(401)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST = do_HEAD = _refuse

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def refusing_server(env):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env.setenv("WANDB_API_KEY", "k" * 40)
    env.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}")
    yield server
    server.shutdown()


def test_a_run_the_server_refuses_is_one_line_online_and_offline_under_auto(refusing_server, cli, tmp_path,
                                                                            shakespeare_path):
    out = cli(*small_run(shakespeare_path, *TINY, "--trainer.logger.mode", "online"))
    assert out.returncode == 2
    assert "W&B could not start its online run (CommError" in one_error_line(out.stderr)

    out = cli(*small_run(shakespeare_path, *TINY))  # mode auto: credentials and a server, which refuses
    assert out.returncode == 0, out.stderr[-3000:]
    assert "W&B logs offline: the online run did not start (CommError" in out.stderr
    assert len(list((tmp_path / "runs" / "wandb").glob("offline-run-*"))) == 1


# --- item 12: run folders that cannot be written -------------------------------------------------------
def test_a_run_folder_that_cannot_be_made_is_one_line_and_default_root_dir_moves_the_run(env, cli, tmp_path,
                                                                                          shakespeare_path):
    (tmp_path / "runs").write_text("a file where the runs folder would go\n")  # mkdir fails, even for root
    before = temp_wandb_runs()
    out = cli(*small_run(shakespeare_path, *TINY))
    assert out.returncode == 2
    assert one_error_line(out.stderr) == ("charlm: error: cannot write the run folder runs: runs is a file, "
                                          "not a folder; choose a writable folder with --trainer.default_root_dir DIR.")
    assert temp_wandb_runs() == before  # W&B did not go elsewhere quietly

    out = cli(*small_run(shakespeare_path, *TINY, "--trainer.default_root_dir", "ok", "--trainer.logger.save_dir",
                         "runs/wandb-here"))  # the W&B logger is the last in cli.yaml's list
    assert out.returncode == 2
    assert ("cannot write the run folder runs/wandb-here: runs is a file, not a folder; set the WandbLogger's save_dir"
            in out.stderr)

    out = cli(*small_run(shakespeare_path, *TINY, "--trainer.default_root_dir", "elsewhere"))
    assert out.returncode == 0, out.stderr[-3000:]
    moved = tmp_path / "elsewhere"
    assert (moved / "shakespeare/version_0/metrics.csv").is_file() and list(moved.glob("wandb/offline-run-*"))
    assert list(moved.rglob("last.ckpt"))


def test_an_immutable_run_folder_is_one_line(env, cli, tmp_path, shakespeare_path):
    """chattr +i refuses writes to root as well (where chmod 0o555 would not)."""
    runs = tmp_path / "runs"
    runs.mkdir()
    if subprocess.run(["chattr", "+i", str(runs)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here (needs ext4/xfs and CAP_LINUX_IMMUTABLE)")
    try:
        out = cli(*small_run(shakespeare_path, *TINY))
    finally:
        subprocess.run(["chattr", "-i", str(runs)], check=True)
    assert out.returncode == 2
    assert one_error_line(out.stderr) == ("charlm: error: cannot write the run folder runs: runs cannot be written "
                                          "(Operation not permitted); choose a writable folder with "
                                          "--trainer.default_root_dir DIR.")


# --- item 13: a resumed fit continues its W&B run -----------------------------------------------------
def test_a_resumed_fit_logs_into_the_same_wandb_run(env, cli, tmp_path, shakespeare_path):
    args = small_run(shakespeare_path, "--trainer.max_steps", "9", "--trainer.val_check_interval", "3",
                     "--trainer.limit_val_batches", "2", "--data.eval_batch_size", "4")
    out = cli(*args, *with_callback("tests.helpers.InterruptAt", step=6))
    assert out.returncode == 1  # Lightning's exit after Ctrl-C
    (ckpt,) = (tmp_path / "runs").rglob("interrupted.ckpt")
    (first,) = (tmp_path / "runs" / "wandb").glob("offline-run-*")
    run_id = first.name.rsplit("-", 1)[-1]
    assert torch.load(ckpt, weights_only=True)["callbacks"]["RunConfig"] == {"wandb_run_id": run_id}

    out = cli(*args, "--ckpt_path", ckpt)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"W&B: continuing run {run_id}" in out.stderr
    parts = sorted((tmp_path / "runs" / "wandb").glob("offline-run-*"))
    # offline: one folder per part, one id (and a "-1" suffix when both parts started within a second)
    assert len(parts) == 2 and offline_parts(tmp_path / "runs" / "wandb", run_id) == parts
    assert f"wandb sync runs/wandb/offline-run-*-{run_id}*" in out.stdout  # the summary: both into that one run

    steps = []  # the sample table continues: rows at each validation, none repeated, none missing
    for part in parts:
        for table in sorted(part.glob("files/media/table/samples_*.table.json")):
            steps += [row[0] for row in json.loads(table.read_text())["data"]]
    assert sorted(steps) == [s for s in (3, 6, 9) for _ in range(3)]  # 3 temperatures each
    # (W&B 0.31 offline writes no summary, and its history is binary: metrics are keyed by
    # trainer/global_step like these rows, so the curves continue the same way)


# --- item 14: the reachability probe honours HTTPS_PROXY --------------------------------------------
class Proxy:
    """A CONNECT proxy on 127.0.0.1 that records each request head and answers ``status``
    (it tunnels nothing: the probe only needs the answer)."""

    def __init__(self, status: str = "200 Connection established") -> None:
        self.status, self.requests = status, []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    head += chunk
                self.requests.append(head.decode("latin-1"))
                conn.sendall(f"HTTP/1.1 {self.status}\r\n\r\n".encode())


def test_the_probe_goes_through_the_https_proxy(env):
    proxy = Proxy()
    env.setenv("HTTPS_PROXY", proxy.url.replace("http://", "http://me:p%40ss@"))
    env.setenv("WANDB_BASE_URL", "https://wandb.invalid")  # never resolved here: the proxy would
    env.setenv("WANDB_API_KEY", "k" * 40)
    assert probe_server() is None
    assert resolve_mode("auto") == ("online", "credentials found and the server answers")
    head = proxy.requests[0]
    assert head.startswith("CONNECT wandb.invalid:443 HTTP/1.1\r\n")
    assert "Proxy-Authorization: Basic bWU6cEBzcw==" in head  # me:p@ss


def test_a_proxy_that_cannot_reach_the_server_means_offline(env):
    proxy = Proxy("502 Bad Gateway")
    env.setenv("https_proxy", proxy.url)
    env.setenv("WANDB_BASE_URL", "https://wandb.invalid")
    env.setenv("WANDB_API_KEY", "k" * 40)
    mode, reason = resolve_mode("auto")
    assert mode == "offline" and reason == (f"the proxy {proxy.url} answered 'HTTP/1.1 502 Bad Gateway' "
                                            f"for wandb.invalid:443")
    assert len(proxy.requests) == 1


def test_no_proxy_sends_the_probe_direct(env):
    proxy = Proxy()
    port = closed_port()
    env.setenv("HTTPS_PROXY", proxy.url)
    env.setenv("NO_PROXY", "127.0.0.1")
    env.setenv("WANDB_BASE_URL", f"https://127.0.0.1:{port}")
    assert probe_server().startswith(f"the W&B server 127.0.0.1:{port} cannot be reached (ConnectionRefusedError")
    assert proxy.requests == []


def test_offline_parts_of_a_run_include_those_started_within_the_same_second(tmp_path):
    for name in ["offline-run-20261128_124032-1tnje231", "offline-run-20261128_124032-1tnje231-1",
                 "offline-run-20261128_130000-1tnje231", "offline-run-20261128_124032-1tnje2310",
                 "offline-run-20261128_124032-other"]:
        (tmp_path / name).mkdir()
    assert [p.name for p in offline_parts(tmp_path, "1tnje231")] == [
        "offline-run-20261128_124032-1tnje231", "offline-run-20261128_124032-1tnje231-1",
        "offline-run-20261128_130000-1tnje231"]
