"""`imgclass serve`: real servers on 127.0.0.1 (a free port), spoken to by tritonclient, curl, the CLI and raw HTTP.

Skipped without the `serve` extra. Every server is a real `imgclass serve` process;
every wait is bounded; nothing asserts on how long anything took.
"""

from __future__ import annotations

import base64
import json
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading

import pytest
from conftest import REAL_MODEL, jsonl, real_model, run_cli
from support.serve_process import quote, start_server, wait_until

pytest.importorskip("starlette", reason="the imgclass[serve] extra is not installed")
pytest.importorskip("uvicorn", reason="the imgclass[serve] extra is not installed")

pytestmark = pytest.mark.timeout(300)

HEADER = "Inference-Header-Content-Length"


@pytest.fixture(scope="module")
def tiny_server(make_model):
    server = start_server("-m", str(make_model("tiny", spatial=32)), "--max-body-mb", "1")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def real_server():
    if not REAL_MODEL.is_file():
        pytest.skip(f"the real model is not at {REAL_MODEL}")
    server = start_server("-m", str(REAL_MODEL))
    try:
        yield server
    finally:
        server.stop()


def _local(paths, *extra) -> list[dict]:
    result = run_cli("predict", *map(str, paths), "-m", str(REAL_MODEL), "--format", "json", *extra)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@real_model
@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_tritonclient_reads_health_metadata_and_top5_equal_to_predict(real_server, photos):
    import numpy as np

    httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient[http] (the test extra) is missing")
    names = ["chelsea.png", "coffee.png", "china.jpg", "flower.jpg", "astronaut.png"]
    local = _local([photos[n] for n in names])
    client = httpclient.InferenceServerClient(real_server.url.removeprefix("http://"))
    model = REAL_MODEL.stem
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(model)
    meta = client.get_model_metadata(model)
    assert meta["inputs"] == [{"name": "IMAGE", "datatype": "BYTES", "shape": [-1]}]
    assert meta["outputs"] == [{"name": "PROBABILITIES", "datatype": "FP32", "shape": [-1, 1000]}]
    tensor = httpclient.InferInput("IMAGE", [len(names)], "BYTES")
    tensor.set_data_from_numpy(np.array([photos[n].read_bytes() for n in names], dtype=np.object_))  # binary default
    wanted = [httpclient.InferRequestedOutput("PROBABILITIES", class_count=5)]
    result = client.infer(model, [tensor], outputs=wanted)
    assert result.get_response()["outputs"][0]["parameters"]["binary_data_size"] > 0  # answered as binary data
    top5 = result.as_numpy("PROBABILITIES")
    assert top5.shape == (len(names), 5)
    for row, record in zip(top5, local, strict=True):
        got = [s.decode().split(":", 2) for s in row]
        assert [int(i) for _, i, _ in got] == [p["index"] for p in record["predictions"]]
        assert [label for _, _, label in got] == [p["label"] for p in record["predictions"]]
        for (prob, _, _), p in zip(got, record["predictions"], strict=True):
            assert abs(float(prob) - p["probability"]) < 1e-5
    probs = client.infer(model, [tensor]).as_numpy("PROBABILITIES")
    assert probs.shape == (len(names), 1000) and probs.dtype == np.float32
    assert [int(np.argmax(r)) for r in probs] == [rec["predictions"][0]["index"] for rec in local]


def _binary_request(images: list[bytes], outputs: list | None = None) -> tuple[bytes, dict]:
    data = b"".join(struct.pack("<I", len(b)) + b for b in images)
    head = {"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [len(images)],
                        "parameters": {"binary_data_size": len(data)}}]}  # fmt: skip
    if outputs is not None:
        head["outputs"] = outputs
    raw = json.dumps(head).encode()
    return raw + data, {HEADER: str(len(raw)), "Content-Type": "application/octet-stream"}


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_binary_tensor_data_both_ways_and_json_both_ways(tiny_server, photos):
    path = f"/v2/models/{tiny_server_name(tiny_server)}/infer"
    body, headers = _binary_request([photos["chelsea.png"].read_bytes()],
                                    [{"name": "PROBABILITIES", "parameters": {"binary_data": True}}])  # fmt: skip
    status, got, data = tiny_server.request("POST", path, body, headers)
    assert status == 200, data
    length = int(got[HEADER.lower()])
    head = json.loads(data[:length])
    out = head["outputs"][0]
    assert out["datatype"] == "FP32" and out["parameters"]["binary_data_size"] == len(data) - length
    probs = struct.unpack(f"<{out['shape'][1]}f", data[length:])
    assert abs(sum(probs) - 1.0) < 1e-4
    # plain JSON: base64 elements in, numbers out; the same probabilities
    plain = {"id": "r1", "inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1],
                                     "data": [base64.b64encode(photos["chelsea.png"].read_bytes()).decode()]}]}  # fmt: skip
    status, got, data = tiny_server.request("POST", path, json.dumps(plain).encode())
    assert status == 200 and HEADER.lower() not in got
    answer = json.loads(data)
    assert answer["id"] == "r1" and answer["outputs"][0]["data"] == pytest.approx(list(probs), abs=1e-6)


def tiny_server_name(server) -> str:
    status, info = server.json("GET", "/v1/model")
    assert status == 200
    return info["name"]


@real_model
def test_curl_and_predict_server_give_the_local_record(real_server, photos, tmp_path, monkeypatch):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(photos["china.jpg"].read_bytes())
    monkeypatch.chdir(tmp_path)
    local = _local(["photo.jpg"])
    curl = shutil.which("curl")
    if curl:
        body = subprocess.run([curl, "-sS", "--data-binary", "@photo.jpg", f"{real_server.url}/v1/classify?name=photo.jpg"],
                              capture_output=True, check=True, timeout=60).stdout  # fmt: skip
    else:
        body = real_server.request("POST", "/v1/classify?name=photo.jpg", photo.read_bytes())[2]
    assert json.loads(body) == local[0]
    remote = run_cli("predict", "photo.jpg", "--server", real_server.url, "--format", "json", cwd=tmp_path)
    assert remote.returncode == 0, remote.stderr
    assert json.loads(remote.stdout) == local
    by_env = run_cli("predict", "photo.jpg", "missing.jpg", "-f", "jsonl", cwd=tmp_path,
                     env={"IMGCLASS_SERVER": real_server.url})  # fmt: skip
    local_two = run_cli("predict", "photo.jpg", "missing.jpg", "-f", "jsonl", "-m", str(REAL_MODEL), cwd=tmp_path)
    assert by_env.returncode == local_two.returncode == 1
    assert jsonl(by_env.stdout) == jsonl(local_two.stdout)


@real_model
def test_batch_server_writes_what_a_local_batch_writes(real_server, photos, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name, path in photos.items():
        (folder / name).write_bytes(path.read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    remote = run_cli("batch", "imgs", "--server", real_server.url, "-f", "csv", "--top", "3", cwd=tmp_path)
    local = run_cli("batch", "imgs", "-m", str(REAL_MODEL), "-f", "csv", "--top", "3", cwd=tmp_path)
    assert remote.returncode == local.returncode == 1
    assert _rounded(remote.stdout) == _rounded(local.stdout)


def _rounded(csv_text: str) -> list[list[str]]:
    """CSV rows with probabilities to 6 places: a batch of several images may differ from a batch of one in the 7th."""
    rows = [line.split(",") for line in csv_text.splitlines()]
    return [[f"{float(c):.6f}" if i == 4 and c and r[0] != "path" else c for i, c in enumerate(r)] for r in rows]


def test_garbage_is_a_400_with_the_records_error_and_the_server_keeps_serving(tiny_server, photos):
    status, answer = tiny_server.json("POST", "/v1/classify?name=junk.jpg", b"this is not an image")
    assert status == 400
    assert answer["error"] == "not an image Pillow can read" and answer["path"] == "junk.jpg"
    status, answer = tiny_server.json("POST", "/v1/classify", b"")
    assert status == 400 and answer["error"] == "empty file"
    body, headers = _binary_request([b"\x00" * 10])
    status, answer = tiny_server.json(
        "POST", f"/v2/models/{tiny_server_name(tiny_server)}/infer", body, headers=headers
    )
    assert status == 400 and answer["error"] == "image 0: not an image Pillow can read"
    for bad in (b"{", b'{"inputs": []}', b'{"inputs": [{"name": "IMAGE", "datatype": "FP32", "shape": [1]}]}'):
        status, answer = tiny_server.json("POST", f"/v2/models/{tiny_server_name(tiny_server)}/infer", bad)
        assert status == 400 and answer["error"]
    cut, headers = _binary_request([b"x" * 100])
    status, answer = tiny_server.json("POST", f"/v2/models/{tiny_server_name(tiny_server)}/infer", cut[:-10],
                                      headers=headers)  # fmt: skip
    assert status == 400 and "binary" in answer["error"]
    status, answer = tiny_server.json("POST", "/v1/classify?top=0", photos["chelsea.png"].read_bytes())
    assert status == 400
    status, answer = tiny_server.json("POST", "/v1/classify?top=2&name=cat", photos["chelsea.png"].read_bytes())
    assert status == 200 and len(answer["predictions"]) == 2 and answer["error"] is None
    assert tiny_server.json("GET", "/v2/models/other")[0] == 404


def test_a_body_over_the_limit_is_413_before_it_is_read(tiny_server):
    # --max-body-mb 1 here; a 64 MB body announced by Content-Length is refused from the header alone
    with socket.create_connection(("127.0.0.1", tiny_server.port), timeout=30) as sock:
        sock.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Length: 67108864\r\n\r\n" + b"\0" * 65536)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413")
    # a chunked body with no length is counted as it comes
    big = b"\0" * (2 * 1024 * 1024)
    status, _, data = tiny_server.request("POST", "/v1/classify", iter([big[:1 << 20], big[1 << 20 :]]),
                                          headers={"Transfer-Encoding": "chunked"})  # fmt: skip
    assert status == 413 and b"over the limit" in data
    assert tiny_server.request("GET", "/v2/health/ready")[0] == 200


def test_metrics_are_prometheus_text(tiny_server, photos):
    before = tiny_server.metric("imgclass_images_total")
    assert tiny_server.request("POST", "/v1/classify", photos["coffee.png"].read_bytes())[0] == 200
    status, headers, text = tiny_server.request("GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = text.decode().splitlines()
    for line in lines:
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or len(line.rsplit(" ", 1)) == 2, line
        if not line.startswith("#"):
            float(line.rsplit(" ", 1)[1])
    assert tiny_server.metric("imgclass_images_total") == before + 1
    assert tiny_server.metric("imgclass_ready") == 1
    assert tiny_server.metric("imgclass_body_bytes") == 0  # every finished request gave its body's bytes back
    assert tiny_server.metric('imgclass_batch_size_bucket{le="+Inf"}') >= 1
    assert any(line.startswith('imgclass_requests_total{endpoint="classify",code="200"}') for line in lines)
    assert any(line.startswith("# TYPE imgclass_inference_seconds histogram") for line in lines)


def test_open_host_without_token_exits_2_before_loading_anything():
    result = run_cli("serve", "--host", "0.0.0.0", "-m", "no-such-model-anywhere.onnx", "--port", "0")
    assert result.returncode == 2
    assert "token" in result.stderr and "no-such-model" not in result.stderr


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_with_a_token_a_request_without_it_is_401(make_model, photos):
    server = start_server("-m", str(make_model("tiny", spatial=32)), env={"IMGCLASS_TOKEN": "s3cret-token"})
    try:
        image = photos["coffee.png"].read_bytes()
        assert server.request("POST", "/v1/classify", image)[0] == 401
        assert server.request("POST", "/v1/classify", image, {"Authorization": "Bearer wrong"})[0] == 401
        assert server.request("GET", "/metrics")[0] == 401
        assert server.request("POST", "/v1/classify", image, {"Authorization": "Bearer s3cret-token"})[0] == 200
        assert server.request("GET", "/v2/health/ready")[0] == 200  # probes need no token
        no_token = run_cli("predict", str(photos["coffee.png"]), "--server", server.url, env={"IMGCLASS_TOKEN": ""})
        assert no_token.returncode == 4 and "401" in no_token.stderr
        with_token = run_cli("predict", str(photos["coffee.png"]), "--server", server.url, "-f", "jsonl",
                             env={"IMGCLASS_TOKEN": "s3cret-token"})  # fmt: skip
        assert with_token.returncode == 0 and jsonl(with_token.stdout)[0]["predictions"]
    finally:
        assert server.stop() == 0


def _post_all(server, count: int, image: bytes, results: list) -> list[threading.Thread]:
    def one() -> None:
        try:
            results.append(server.request("POST", "/v1/classify", image, timeout=120)[0])
        except OSError as err:
            results.append(repr(err))

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_sigterm_answers_all_16_requests_in_flight_then_exits_0(make_model, photos):
    # a long batch delay and a batch of 32 keep all 16 waiting in the queue when the signal comes
    server = start_server("-m", str(make_model("tiny", spatial=32)), "--max-batch", "32", "--max-delay-ms", "4000")
    results: list = []
    threads = _post_all(server, 16, photos["coffee.png"].read_bytes(), results)
    try:
        assert wait_until(lambda: server.metric("imgclass_queue_images") == 16, timeout=60)
        server.process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=120)
        assert server.process.wait(timeout=120) == 0
    finally:
        if server.process.poll() is None:
            server.process.kill()
    assert results == [200] * 16
    assert server.process.returncode == 0


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_a_full_queue_is_503_with_retry_after_and_a_gone_client_frees_its_place(make_model, photos):
    server = start_server("-m", str(make_model("tiny", spatial=32)), "--max-batch", "2", "--max-queue", "2",
                          "--max-delay-ms", "3000")  # fmt: skip
    image = photos["coffee.png"].read_bytes()
    try:
        results: list = []
        threads = _post_all(server, 1, image, results)  # waits up to 3 s for a second image
        assert wait_until(lambda: server.metric("imgclass_queue_images") == 1, timeout=60)
        files = _multipart([("a.png", image), ("b.png", image)])
        status, headers, _ = server.request("POST", "/v1/classify", files[0], files[1])
        assert status == 503 and headers["retry-after"] == "1"
        for thread in threads:
            thread.join(timeout=60)
        assert results == [200]
        # a client that goes away: its image leaves the queue without waiting for its batch
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(
                f"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Length: {len(image)}\r\n\r\n".encode() + image
            )
            assert wait_until(lambda: server.metric("imgclass_queue_images") == 1, timeout=60)
        assert wait_until(lambda: server.metric("imgclass_queue_images") == 0, timeout=60)
        status, records = server.json("POST", "/v1/classify", files[0], headers=files[1])
        assert status == 200 and [r["path"] for r in records] == ["a.png", "b.png"]
    finally:
        assert server.stop() == 0


def _multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, dict]:
    boundary = "imgclass-test-boundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
             f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n" for name, data in files]  # fmt: skip
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), {
        "Content-Type": f"multipart/form-data; boundary={boundary}"
    }


def test_the_client_imports_neither_numpy_nor_onnxruntime(tiny_server, photos):
    code = (
        "import sys; from imgclass.cli import run; "
        f"code = run(['predict', {str(photos['coffee.png'])!r}, '--server', {tiny_server.url!r}, '-f', 'jsonl']); "
        "print(sorted(m for m in ('numpy', 'onnxruntime', 'PIL', 'starlette') if m in sys.modules), code, file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stderr.strip().splitlines()[-1] == "[] 0", result.stderr
    assert jsonl(result.stdout)[0]["predictions"]


def test_server_side_options_are_refused_with_server(photos):
    result = run_cli("predict", str(photos["coffee.png"]), "--server", "http://127.0.0.1:9", "--tta", "flip")
    assert result.returncode == 2 and "--tta" in result.stderr
    grouped = run_cli("predict", str(photos["coffee.png"]), "--server", "http://127.0.0.1:9", "--groups", "coarse")
    assert grouped.returncode == 2 and "--groups" in grouped.stderr
    url = run_cli("predict", "https://example.org/cat.jpg", "--server", "http://127.0.0.1:9")
    assert url.returncode == 2 and "local run" in url.stderr
    down = run_cli("predict", str(photos["coffee.png"]), "--server", "http://127.0.0.1:9")
    assert down.returncode == 4 and "cannot reach the server" in down.stderr


def test_names_are_escaped_and_no_request_names_a_server_path(tiny_server, tmp_path):
    status, answer = tiny_server.json("POST", "/v1/classify?name=" + quote("/etc/passwd"), b"")
    assert status == 400 and answer["error"] == "empty file"  # a name is only a label: nothing is opened
    status, answer = tiny_server.json("POST", "/v1/classify?name=" + quote("\x1b[31mred"), b"junk")
    assert status == 400 and answer["path"] == "\x1b[31mred"  # JSON carries it escaped; the CLI prints it inert


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_hosts_need_no_token(host):
    from imgclass.serve import ServeOptions

    ServeOptions(host=host).check()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.org", "127.0.0.1.evil.example"])
@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_other_hosts_need_a_token(host):
    from imgclass.errors import UsageError
    from imgclass.serve import ServeOptions

    with pytest.raises(UsageError, match="token"):
        ServeOptions(host=host).check()
    ServeOptions(host=host, token="t0ken").check()
    with pytest.raises(UsageError, match="empty"):
        ServeOptions(host=host, token="  ").check()


def _frame(images: list[bytes], shape=None, size=None) -> tuple[bytes, str]:
    data = b"".join(struct.pack("<I", len(b)) + b for b in images)
    head = json.dumps({"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": shape or [len(images)],
                                   "parameters": {"binary_data_size": len(data) if size is None else size}}]}).encode()  # fmt: skip
    return head + data, str(len(head))


def test_the_protocol_reader_refuses_what_does_not_add_up():
    from imgclass.serve.protocol import ProtocolError, parse_infer

    body, length = _frame([b"abc", b"de"], shape=[2, 1])
    assert parse_infer(body, length).images == [b"abc", b"de"]
    for bad_body, bad_length in (
        (*_frame([b"abc"], shape=[2]),),  # the shape says 2
        (*_frame([b"abc"], size=1),),  # a length cut off
        (_frame([b"abc"])[0] + b"extra", _frame([b"abc"])[1]),  # bytes nobody described
        (_frame([b"abc"])[0], "999999"),  # a header longer than the body
        (_frame([b"abc"])[0], "-1"),
        (_frame([b"abc"])[0], "ten"),
        (*_frame([b"x"] * 2000),),  # more images than one request may carry
        (*_frame([b"abc"], shape=[1 << 40, 1 << 40]),),  # a huge shape is refused before anything is built
    ):
        with pytest.raises(ProtocolError):
            parse_infer(bad_body, bad_length)
    with pytest.raises(ProtocolError, match="classification"):
        body, length = _frame([b"abc"])
        head = json.loads(body[: int(length)])
        head["outputs"] = [{"name": "PROBABILITIES", "parameters": {"classification": 0}}]
        raw = json.dumps(head).encode()
        parse_infer(raw + body[int(length) :], str(len(raw)))


def test_classification_strings_rank_like_records():
    import numpy as np

    from imgclass.serve.protocol import classification

    row = np.array([0.1, 0.4, 0.4, 0.1], dtype=np.float32)
    assert classification(row, 3, ("a", "b:c", "d", "e")) == ["0.400000006:1:b:c", "0.400000006:2:d", "0.100000001:0:a"]
    assert len(classification(row, 10, ("a", "b", "c", "d"))) == 4
