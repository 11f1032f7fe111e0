"""`imgclass serve --engine ray`: the same app on Ray Serve, on a local Ray instance the test starts (2 CPUs).

Skipped without Ray Serve (the `imgclass[ray-serve]` extra). Every wait is bounded.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket

import pytest
from conftest import jsonl, run_cli

import imgclass
from imgclass.serve import ServeOptions

ray = pytest.importorskip("ray", reason="the imgclass[ray-serve] extra is not installed")
pytest.importorskip("ray.serve", reason="the imgclass[ray-serve] extra is not installed")
pytest.importorskip("starlette", reason="the imgclass[serve] extra is not installed")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def ray_instance():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def test_ray_serve_answers_the_protocol_and_the_local_record(ray_instance, make_model, photos, tmp_path, monkeypatch):
    from imgclass.serve.ray import deploy, undeploy

    monkeypatch.chdir(tmp_path)
    model = make_model("tiny", spatial=32)
    photo = tmp_path / "cat.png"
    photo.write_bytes(photos["chelsea.png"].read_bytes())
    local = run_cli("predict", "cat.png", "-m", str(model), "-f", "jsonl", cwd=tmp_path)
    assert local.returncode == 0, local.stderr
    port = _free_port()
    url = deploy(imgclass.load(model), ServeOptions(port=port), replicas=1)
    try:
        assert url == f"http://127.0.0.1:{port}"
        assert _request(port, "GET", "/v2/health/ready")[0] == 200
        status, meta = _request(port, "GET", f"/v2/models/{model.stem}")
        assert status == 200 and json.loads(meta)["inputs"][0]["datatype"] == "BYTES"
        status, record = _request(port, "POST", "/v1/classify?name=cat.png", photo.read_bytes())
        assert status == 200 and json.loads(record) == jsonl(local.stdout)[0]
        status, bad = _request(port, "POST", "/v1/classify", b"garbage")
        assert status == 400 and json.loads(bad)["error"] == "not an image Pillow can read"
        remote = run_cli("predict", "cat.png", "--server", url, "-f", "jsonl", cwd=tmp_path)
        assert remote.returncode == 0 and remote.stdout == local.stdout
    finally:
        undeploy()


def test_the_command_on_ray_answers_what_is_in_flight_at_sigterm_and_exits_0(make_model, photos):
    import threading

    from support.serve_process import start_server, wait_until

    # a long batch delay keeps all 8 waiting in the replica's queue when the signal comes
    server = start_server("-m", str(make_model("tiny", spatial=32)), "--engine", "ray", "--max-batch", "32",
                          "--max-delay-ms", "5000", port=_free_port(), timeout=300)  # fmt: skip
    results: list = []

    def one() -> None:
        try:
            results.append(server.request("POST", "/v1/classify", photos["coffee.png"].read_bytes(), timeout=120)[0])
        except OSError as err:
            results.append(repr(err))

    try:
        assert server.request("GET", "/v2/health/ready")[0] == 200
        threads = [threading.Thread(target=one) for _ in range(8)]
        for thread in threads:
            thread.start()
        assert wait_until(lambda: server.metric("imgclass_queue_images") == 8, timeout=120)
        assert server.stop(timeout=300) == 0
        for thread in threads:
            thread.join(timeout=120)
    finally:
        if server.process.poll() is None:
            server.process.kill()
    assert results == [200] * 8


def test_engine_ray_needs_the_same_token_rule(make_model):
    result = run_cli("serve", "--engine", "ray", "--host", "0.0.0.0", "-m", str(make_model("tiny", spatial=32)))
    assert result.returncode == 2 and "token" in result.stderr
