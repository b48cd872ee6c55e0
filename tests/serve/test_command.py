import signal
import subprocess
import threading
import time

import httpx

from tests.cli_runs import assert_one_line, charlm, run_python
from tests.serve.conftest import SHAKESPEARE_CKPT, serving
from tests.serve.sse import events


def test_serve_listens_on_127_0_0_1_by_default_and_prints_its_url(code_ckpt):
    with serving("--ckpt_path", str(SHAKESPEARE_CKPT), str(code_ckpt)) as (url, proc):
        assert url.startswith("http://127.0.0.1:")
        models = httpx.get(url + "api/models").json()
        assert [m["name"] for m in models["models"]] == ["lstm_1x16_v0.ckpt", "code.ckpt"]
        assert all(m["examples"] for m in models["models"])  # the page's example prompts, per model
        assert models["limits"]["max_generations"] == 8
    assert "warning" not in proc.stderr.read()


def test_another_interface_only_with_host_and_a_warning():
    with serving("--ckpt_path", str(SHAKESPEARE_CKPT), "--host", "0.0.0.0") as (url, proc):
        assert httpx.get(url + "api/models").status_code == 200
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert "warning: listening on 0.0.0.0" in err and "no password" in err and "--host 127.0.0.1" in err


def test_a_bad_checkpoint_is_one_line_before_anything_listens(tmp_path):
    out = charlm("serve", "--ckpt_path", str(SHAKESPEARE_CKPT), str(tmp_path / "missing.ckpt"), "--port", "0",
                 timeout=120)
    assert_one_line(out, "--ckpt_path", "missing.ckpt", "does not exist")
    assert "open http" not in out.stdout


def test_a_port_in_use_is_one_line_naming_the_flag():
    with serving("--ckpt_path", str(SHAKESPEARE_CKPT)) as (url, _):
        port = url.rsplit(":", 1)[1].strip("/")
        out = charlm("serve", "--ckpt_path", str(SHAKESPEARE_CKPT), "--port", port, timeout=120)
    assert_one_line(out, f"--port {port}", "choose another --port")


def test_max_generations_must_be_positive():
    assert_one_line(charlm("serve", "--ckpt_path", str(SHAKESPEARE_CKPT), "--max_generations", "0", timeout=120),
                    "--max_generations must be a positive integer")


def test_the_command_table_does_not_import_the_web_libraries():
    out = run_python("-c", "import sys; from charlm.cli.parser import build_parser; build_parser(); "
                     "print(sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn')))")
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr
    help_text = charlm("serve", "--help", timeout=120).stdout
    assert "--ckpt_path" in help_text and "--max_generations" in help_text and "127.0.0.1" in help_text


def test_ctrl_c_stops_the_server():
    with serving("--ckpt_path", str(SHAKESPEARE_CKPT)) as (_, proc):
        proc.send_signal(2)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise AssertionError("the server did not stop on Ctrl-C") from None
    assert proc.returncode in (0, 130), proc.stderr.read()


def test_ctrl_c_while_a_tab_streams_and_a_look_computes_exits_130_within_2_s_without_a_traceback(slow_ckpt, tmp_path):
    log = tmp_path / "stderr.txt"
    with serving("--ckpt_path", str(slow_ckpt), log=log) as (url, proc):
        seen, answers = [], {}

        def stream() -> None:  # a tab writing 10,000 bytes: seconds of work left when Ctrl-C comes
            with httpx.stream("POST", url + "api/write", json={"prompt": "a", "length": 10_000}, timeout=60) as got:
                seen.extend(events(got))

        def look() -> None:  # 5,000 bytes stepped one by one through a 2 x 512 LSTM: seconds of work
            answers["look"] = httpx.post(url + "api/look", json={"text": "ab" * 2500}, timeout=60)

        threads = [threading.Thread(target=stream), threading.Thread(target=look)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while sum(event == "text" for event, _ in seen) < 3 or httpx.get(url + "api/status").json()["analyses"][
                "running"] < 1:
            assert time.monotonic() < deadline, "the stream and the look did not both start"
            time.sleep(0.02)
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        took = time.monotonic() - start
        for thread in threads:
            thread.join(30)
    assert proc.returncode == 130 and took < 2, (proc.returncode, took)
    assert log.read_text() == ""  # no traceback, no uvicorn complaint
    event, said = seen[-1]  # the stream ended saying why, rather than being cut
    assert event == "shutdown" and said["error"].startswith("charlm serve stopped"), seen[-1]
    assert answers["look"].status_code == 503 and "restart it" in answers["look"].json()["error"]
