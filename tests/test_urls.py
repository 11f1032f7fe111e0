"""Image URLs as inputs, against a real server on 127.0.0.1: answers, failures as records, limits, credentials."""

from __future__ import annotations

import io
import json
import time

import pytest
from conftest import jsonl, run_cli
from PIL import Image
from support.http_server import Behaviour, Server

from imgclass.data.sources import check_inputs, expand
from imgclass.store.download import DownloadError, UrlPolicy, fetch_bytes


def _jpeg(colour: tuple[int, int, int], size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


@pytest.fixture
def images(tmp_path):
    """Two local JPEG files, and the same bytes served under URLs that say nothing of what they are."""
    red, blue = _jpeg((200, 30, 30)), _jpeg((30, 30, 200))
    (tmp_path / "red.jpg").write_bytes(red)
    (tmp_path / "blue.jpg").write_bytes(blue)
    return {"red": red, "blue": blue, "dir": tmp_path}


@pytest.fixture
def server(images):
    behaviour = Behaviour(
        files={
            "/red.jpg": images["red"],
            "/img?id=2": images["blue"],  # no extension; a query string
            "/lies.png": images["red"],  # a JPEG under a .png name
            "/huge.jpg": images["red"],
            "/drip.jpg": images["red"],
        },
        redirects={"/to-file": "file:///etc/passwd", "/hop": "/red.jpg", "/loop": "/loop"},
        lengths={"/huge.jpg": 10 * 1000**3},
        drips={"/drip.jpg": 1.0},
    )
    with Server(behaviour) as srv:
        yield srv


def test_urls_are_inputs_and_never_globbed():
    urls = ["http://127.0.0.1:1/a.jpg?x=[1]", "HTTPS://example.org/*.jpg"]
    assert list(expand(urls)) == urls
    check_inputs(urls)  # a URL is an input even though no such file exists


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_fetch_bytes_limits(server, images):
    policy = UrlPolicy(timeout=5, max_bytes=1_000_000)
    assert fetch_bytes(server.url + "/red.jpg", policy) == images["red"]
    assert fetch_bytes(server.url + "/hop", policy) == images["red"]
    cases = {
        "/missing.jpg": "not-found (HTTP 404",
        "/to-file": "redirected to file:///etc/passwd",
        "/loop": "more than 5 redirects",
        "/huge.jpg": "10000000000 bytes announced, over the limit of 1000000",
    }
    for path, reason in cases.items():
        with pytest.raises(DownloadError, match=reason.replace("(", r"\(")):
            fetch_bytes(server.url + path, policy)
    with pytest.raises(DownloadError, match="over the limit|more than the limit"):
        fetch_bytes(server.url + "/red.jpg", UrlPolicy(timeout=5, max_bytes=100))
    with pytest.raises(DownloadError, match="offline"):
        fetch_bytes(server.url + "/red.jpg", UrlPolicy(offline=True))
    with pytest.raises(DownloadError, match="only http and https"):
        fetch_bytes("ftp://127.0.0.1/red.jpg")


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_a_dripping_server_is_given_up_at_the_deadline(server):
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"not received within 2 s"):
        fetch_bytes(server.url + "/drip.jpg", UrlPolicy(timeout=2))
    assert time.monotonic() - start < 10  # bounded (generous: the machine is shared)


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_no_credentials_from_the_environment(server, tmp_path, monkeypatch):
    """No .netrc is read, nothing is sent but what the URL itself carries; a URL's own password stays on its host."""
    (tmp_path / ".netrc").write_text("machine 127.0.0.1 login secret password hunter2\n")
    (tmp_path / ".netrc").chmod(0o600)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    fetch_bytes(server.url + "/red.jpg", UrlPolicy(timeout=5))
    assert server.behaviour.authorizations == [None]
    host = server.url.removeprefix("http://")
    fetch_bytes(f"http://u:p@{host}/hop", UrlPolicy(timeout=5))
    assert server.behaviour.authorizations[1].startswith("Basic ")
    assert server.behaviour.authorizations[2] is None  # the redirect did not carry it


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_a_url_gives_the_local_files_answer(server, images, make_model):
    import imgclass

    clf = imgclass.load(make_model("tiny"))
    local = images["dir"] / "blue.jpg"
    records = list(clf.classify([str(local), server.url + "/img?id=2", server.url + "/lies.png"]))
    assert [r.error for r in records] == [None, None, None]
    assert records[1].path == server.url + "/img?id=2"  # the URL as given
    assert records[1].predictions == records[0].predictions
    same = list(clf.classify([str(images["dir"] / "red.jpg")]))[0]
    assert records[2].predictions == same.predictions  # sniffed: a JPEG named .png decodes as the JPEG


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_cli_mixed_list_failures_are_records(server, images, make_model, home):
    """A list on stdin mixing URLs and paths: one record each; every failing URL ends in time; exit 1."""
    good = [str(images["dir"] / "red.jpg"), server.url + "/red.jpg", str(images["dir"] / "blue.jpg")]
    bad = ["/missing.jpg", "/to-file", "/huge.jpg", "/drip.jpg"]
    listing = "\n".join(good[:2] + [server.url + p for p in bad] + good[2:]) + "\n"
    start = time.monotonic()
    result = run_cli("batch", "-", "-m", make_model("tiny"), "--url-timeout", "3", "-f", "jsonl", input=listing)
    elapsed = time.monotonic() - start
    assert result.returncode == 1, result.stderr
    records = jsonl(result.stdout)
    assert [r["path"] for r in records] == listing.split()
    by_path = {r["path"]: r for r in records}
    assert all(by_path[p]["error"] is None and by_path[p]["predictions"] for p in good)
    assert by_path[good[1]]["predictions"] == by_path[good[0]]["predictions"]
    errors = {p: by_path[server.url + p]["error"] for p in bad}
    assert "not-found" in errors["/missing.jpg"]
    assert "file:///etc/passwd" in errors["/to-file"] and "only http and https" in errors["/to-file"]
    assert "10000000000 bytes announced" in errors["/huge.jpg"]
    assert "not received within 3 s" in errors["/drip.jpg"]
    assert elapsed < 120, elapsed  # the drip did not hold the run (it would take ~700 s at a byte a second)


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_cli_offline_refuses_urls_and_resume_skips_them(server, images, make_model, home, tmp_path):
    url = server.url + "/red.jpg"
    local = str(images["dir"] / "blue.jpg")
    result = run_cli("predict", url, local, "-m", make_model("tiny"), "--offline", "-f", "jsonl")
    assert result.returncode == 1
    records = jsonl(result.stdout)
    assert "offline" in records[0]["error"] and records[1]["error"] is None
    out = tmp_path / "out.jsonl"
    first = run_cli("batch", url, "-m", make_model("tiny"), "-o", out)
    assert first.returncode == 0, first.stderr
    requests = len(server.behaviour.requests)
    again = run_cli("batch", url, local, "-m", make_model("tiny"), "-o", out, "--resume")
    assert again.returncode == 0, again.stderr
    assert len(server.behaviour.requests) == requests  # the URL was in the output already: not fetched again
    assert [json.loads(line)["path"] for line in out.read_text().splitlines()] == [url, local]


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_evaluate_list_with_urls(server, images, make_model, home, tmp_path):
    """A URL in an evaluate list stays a URL (never joined to the list's folder) and is classified."""
    model = make_model("tiny", classes=3, spatial=None)
    labels = tmp_path / "labels.txt"
    labels.write_text("red\nblue\nother\n")
    listing = tmp_path / "list.csv"
    listing.write_text(f"path,label\n{server.url}/red.jpg,red\n{images['dir'] / 'blue.jpg'},blue\n")
    result = run_cli("evaluate", listing, "--model", model, "--labels", labels, "-f", "json", "--url-timeout", "5")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["classified"] == 2 and report.get("failed", 0) == 0, report
    assert ("/red.jpg", None) in server.behaviour.requests


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_predict_takes_a_url(server, images, make_model):
    import imgclass

    clf = imgclass.load(make_model("tiny"))
    remote = clf.predict(server.url + "/red.jpg")
    assert remote.path == server.url + "/red.jpg"
    assert remote.predictions == clf.predict(str(images["dir"] / "red.jpg")).predictions
    with pytest.raises(imgclass.InputError, match="not-found"):
        clf.predict(server.url + "/missing.jpg")


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_a_body_without_length_is_cut_at_the_limit_and_a_silent_server_times_out(images):
    import socket

    endless = Behaviour(files={"/big.jpg": images["red"] * 50}, no_length=True)
    with Server(endless) as srv:
        with pytest.raises(DownloadError, match="more than the limit of 5000 bytes"):
            fetch_bytes(srv.url + "/big.jpg", UrlPolicy(timeout=5, max_bytes=5000))
    with socket.socket() as silent:  # accepts connections (the kernel does) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        start = time.monotonic()
        with pytest.raises(DownloadError, match="within 1 s"):
            fetch_bytes(f"http://127.0.0.1:{silent.getsockname()[1]}/x.jpg", UrlPolicy(timeout=1))
        assert time.monotonic() - start < 10


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_proxy_credentials_go_to_the_proxy_only(images, monkeypatch):
    """urllib copies Proxy-Authorization onto a redirect; a redirect that bypasses the proxy must not get it."""
    with Server(Behaviour(files={"/red.jpg": images["red"]})) as target:
        port = target.httpd.server_address[1]
        hops = {
            "http://example.invalid/away": f"http://localhost:{port}/red.jpg",  # no_proxy: straight to the target
            "http://example.invalid/stay": "http://example.invalid/red.jpg",  # through the proxy again
        }
        behaviour = Behaviour(files={"http://example.invalid/red.jpg": images["red"]}, redirects=hops)
        with Server(behaviour) as proxy:
            monkeypatch.setenv("http_proxy", proxy.url.replace("http://", "http://user:secret@"))
            monkeypatch.setenv("no_proxy", "localhost")
            assert fetch_bytes("http://example.invalid/away", UrlPolicy(timeout=5)) == images["red"]
            assert fetch_bytes("http://example.invalid/stay", UrlPolicy(timeout=5)) == images["red"]
        assert target.behaviour.proxy_authorizations == [None]
        assert all(value and value.startswith("Basic ") for value in proxy.behaviour.proxy_authorizations)
        assert len(proxy.behaviour.proxy_authorizations) == 3


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_train_list_with_urls(tmp_path, make_model, home):
    """A training list whose images are partly URLs: every image is read, none is lost."""
    from test_train import in_process, photo_classes

    data = photo_classes(tmp_path / "data", per_class=8)
    served = {f"/{p.parent.name}/{p.name}": p.read_bytes() for p in sorted((data / "coffee").iterdir())}
    with Server(Behaviour(files=served)) as srv:
        rows = ["path,label"]
        for image in sorted(data.rglob("*.jpg")):
            key = f"/{image.parent.name}/{image.name}"
            rows.append(f"{srv.url + key if key in served else image},{image.parent.name}")
        listing = tmp_path / "list.csv"
        listing.write_text("\n".join(rows) + "\n")
        code, out, err = in_process("train", listing, "--model", make_model("tiny", spatial=32), "-o",
                                    tmp_path / "m.onnx", "--augment", "1", "--c", "1", "-f", "json")  # fmt: skip
        assert code == 0, err
        report = json.loads(out)
        assert report["train_images"] + report["val_images"] == 24
        assert len([r for r in srv.behaviour.requests if r[0].startswith("/coffee/")]) >= 8
