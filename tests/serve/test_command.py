import subprocess

import httpx

from tests.cli_runs import assert_one_line, charlm, run_python
from tests.serve.conftest import SHAKESPEARE_CKPT, serving


def test_serve_listens_on_127_0_0_1_by_default_and_prints_its_url(code_ckpt):
    with serving("--ckpt_path", str(SHAKESPEARE_CKPT), str(code_ckpt)) as (url, proc):
        assert url.startswith("http://127.0.0.1:")
        models = httpx.get(url + "api/models").json()
        assert [m["name"] for m in models["models"]] == ["lstm_1x16_v0.ckpt", "code.ckpt"]
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
