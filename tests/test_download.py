"""Downloads against a real HTTP server on 127.0.0.1: good, wrong, cut, resumed, missing, concurrent."""

import hashlib
import json
import subprocess

import pytest
from conftest import imgclass_command, jsonl, run_cli
from support.http_server import Behaviour, Server

from imgclass.errors import ModelError
from imgclass.store import cache
from imgclass.store import registry as store
from imgclass.store.catalog import Entry
from imgclass.store.download import DownloadFailed, display_url, fetch, forget_failures


@pytest.fixture(autouse=True)
def fresh_run():
    """Each test starts like a new process: no URL is remembered as failed."""
    forget_failures()
    yield
    forget_failures()


@pytest.fixture
def model_bytes(make_model):
    return make_model("tiny", spatial=None, seed=11).read_bytes()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(home):
    folder = home / "models"
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock")) if folder.exists() else []


def fake_entry(data: bytes, name="zoo-model", urls=("http://127.0.0.1:9/unused",)) -> Entry:
    return Entry(
        name=name,
        aliases=(),
        family="resnet",
        file=f"{name}.onnx",
        urls=tuple(urls),
        sha256=sha(data),
        size=len(data),
        preset="torchvision",
        labels="imagenet-1k",
        license="x",
        source="test",
        accuracy={},
    )


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_good_pull_by_url_is_usable_by_name_with_the_network_gone(model_bytes, photos, home):
    with Server(Behaviour(files={"/m.onnx": model_bytes})) as server:
        result = run_cli(
            "models", "pull", "--url", f"{server.url}/m.onnx", "--name", "mine", "--sha256", sha(model_bytes)
        )
        assert result.returncode == 0, result.stderr
    assert leftovers(home) == ["mine.onnx", "registry.json"]
    assert (home / "models" / "mine.onnx").read_bytes() == model_bytes
    offline = run_cli("predict", photos["china.jpg"], "--model", "mine", "--offline")
    assert offline.returncode == 0, offline.stderr
    assert jsonl(offline.stdout)[0]["model"] == "mine"
    listed = json.loads(run_cli("models", "list", "--format", "json").stdout)
    assert any(m["name"] == "mine" and m["cached"] and m["sha256"] == sha(model_bytes) for m in listed)


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_wrong_sha256_exits_3_and_leaves_nothing(model_bytes, home):
    with Server(Behaviour(files={"/m.onnx": model_bytes})) as server:
        result = run_cli("models", "pull", "--url", f"{server.url}/m.onnx", "--name", "mine", "--sha256", "0" * 64)
    assert result.returncode == 3
    assert "sha256 mismatch" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert leftovers(home) == []


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_mirror_serving_wrong_bytes_exits_3_and_leaves_nothing(home):
    with Server(Behaviour(files={"/resnet50-v1-12.onnx": b"not the model" * 1000})) as server:
        result = run_cli("models", "pull", "resnet50", env={"IMGCLASS_MIRROR": server.url + "/"})
        assert server.behaviour.requests[0][0] == "/resnet50-v1-12.onnx"
    assert result.returncode == 3 and "expected 102576593" in result.stderr
    assert leftovers(home) == []


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_truncated_transfer_without_range_support_exits_3(model_bytes, home):
    behaviour = Behaviour(files={"/m.onnx": model_bytes}, ranges=False, cut_after=len(model_bytes) // 3, cut_times=99)
    with Server(behaviour) as server:
        result = run_cli("models", "pull", "--url", f"{server.url}/m.onnx", "--name", "mine")
    assert result.returncode == 3 and "connection lost" in result.stderr
    assert leftovers(home) == []


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_cut_transfer_is_resumed_with_range(model_bytes, home, monkeypatch):
    monkeypatch.setenv("IMGCLASS_MIRROR", "")
    behaviour = Behaviour(files={"/zoo-model.onnx": model_bytes}, cut_after=len(model_bytes) // 2, cut_times=1)
    with Server(behaviour) as server:
        monkeypatch.setenv("IMGCLASS_MIRROR", server.url)
        path = store.pull_entry(fake_entry(model_bytes))
    assert path.read_bytes() == model_bytes
    assert [r for _, r in behaviour.requests] == [None, f"bytes={len(model_bytes) // 2}-"]
    assert leftovers(home) == ["zoo-model.onnx"]


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_server_ignoring_range_restarts_from_zero(model_bytes, home, tmp_path):
    behaviour = Behaviour(files={"/m": model_bytes}, ranges=False, cut_after=1000, cut_times=1)
    with Server(behaviour) as server:
        digest = fetch([f"{server.url}/m"], tmp_path / "out.onnx", sha(model_bytes), len(model_bytes))
    assert digest == sha(model_bytes) and (tmp_path / "out.onnx").read_bytes() == model_bytes


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_404_then_next_url(model_bytes, home, tmp_path):
    with Server(Behaviour(files={"/good": model_bytes})) as server:
        with pytest.raises(ModelError, match="HTTP 404"):
            fetch([f"{server.url}/missing"], tmp_path / "a.onnx", sha(model_bytes))
        assert not (tmp_path / "a.onnx").exists()
        fetch([f"{server.url}/missing", f"{server.url}/good"], tmp_path / "b.onnx", sha(model_bytes))
    assert (tmp_path / "b.onnx").read_bytes() == model_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.onnx"]


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_two_pulls_at_once_share_one_download(model_bytes, home):
    behaviour = Behaviour(files={"/m.onnx": model_bytes}, delay=0.01)
    with Server(behaviour) as server:
        cmd = [
            *imgclass_command(),
            "models",
            "pull",
            "--url",
            f"{server.url}/m.onnx",
            "--name",
            "mine",
            "--sha256",
            sha(model_bytes),
        ]
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert (home / "models" / "mine.onnx").read_bytes() == model_bytes
    assert leftovers(home) == ["mine.onnx", "registry.json"]


def test_offline_and_not_cached_says_how_to_get_the_file(photos, home):
    result = run_cli("predict", photos["china.jpg"], "--model", "resnet50", env={"IMGCLASS_OFFLINE": "1"})
    assert result.returncode == 3
    assert "IMGCLASS_MIRROR" in result.stderr and "models pull --file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_import_file_verifies_catalog_checksum(model_bytes, tmp_path, home):
    src = tmp_path / "download.onnx"
    src.write_bytes(model_bytes)
    wrong = run_cli("models", "pull", "--file", src, "--name", "resnet50-v1-12")
    assert wrong.returncode == 3 and "does not match the catalog" in wrong.stderr
    assert leftovers(home) == []
    ok = run_cli("models", "pull", "--file", src, "--name", "local")
    assert ok.returncode == 0
    assert cache.registry()["local"].sha256 == sha(model_bytes)


def test_verify_and_remove(model_bytes, tmp_path, home):
    src = tmp_path / "m.onnx"
    src.write_bytes(model_bytes)
    assert run_cli("models", "pull", "--file", src, "--name", "local").returncode == 0
    assert run_cli("models", "verify").returncode == 0
    (home / "models" / "local.onnx").write_bytes(model_bytes[:-1] + b"\x00")
    damaged = run_cli("models", "verify", "--format", "json")
    assert damaged.returncode == 3
    assert json.loads(damaged.stdout)[0]["ok"] is False and "local" in damaged.stderr
    assert run_cli("models", "remove", "local").returncode == 0
    assert leftovers(home) == ["registry.json"]
    assert run_cli("models", "remove", "local").returncode == 2


def test_models_path_and_home_override(home):
    assert run_cli("models", "path").stdout.strip() == str(home / "models")


def paths(behaviour: Behaviour) -> list[str]:
    return [path for path, _ in behaviour.requests]


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_catalog_model_whose_first_url_is_missing_comes_from_the_second(model_bytes, home):
    with Server(Behaviour(files={"/legacy/zoo-model.onnx": model_bytes})) as server:
        entry = fake_entry(
            model_bytes, urls=[f"{server.url}/folder/zoo-model_timm.onnx", f"{server.url}/legacy/zoo-model.onnx"]
        )
        path = store.pull_entry(entry)
    assert path.read_bytes() == model_bytes
    assert paths(server.behaviour) == ["/folder/zoo-model_timm.onnx", "/legacy/zoo-model.onnx"]
    assert leftovers(home) == ["zoo-model.onnx"]


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_all_urls_failing_exits_3_with_one_line_per_url(home):
    behaviour = Behaviour(
        files={"/b/resnet50-v1-12.onnx": b"not the model" * 1000}, statuses={"/c/resnet50-v1-12.onnx": 503}
    )
    with Server(behaviour) as server:
        mirrors = f"{server.url}/a/ {server.url}/b  {server.url}/c"
        result = run_cli("models", "pull", "resnet50", env={"IMGCLASS_MIRROR": mirrors})
    assert result.returncode == 3
    lines = result.stderr.splitlines()
    assert lines[:4] == [
        "imgclass: error: resnet50-v1-12: download failed from all 3 URLs, nothing was saved.",
        f"  {server.url}/a/resnet50-v1-12.onnx: not-found (HTTP 404 Not Found)",
        f"  {server.url}/b/resnet50-v1-12.onnx: wrong-size (got 13000 bytes, expected 102576593)",
        f"  {server.url}/c/resnet50-v1-12.onnx: server-error (HTTP 503 Service Unavailable)",
    ]
    assert len(lines) == 5 and lines[4].startswith(
        "Other ways: use a local file with --model ./FILE.onnx, set IMGCLASS_MIRROR="
    )
    assert "catalog's exact file" in lines[4] and "imgclass models pull --file PATH --name resnet50-v1-12" in lines[4]
    assert "Errno" not in result.stderr
    assert leftovers(home) == []


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_a_url_that_failed_for_good_is_not_asked_again_in_the_same_run(model_bytes, home):
    other = model_bytes + b"\0"
    files = {"/bad": b"junk" * 100, "/zoo-model.onnx": model_bytes, "/other.onnx": other}
    with Server(Behaviour(files=files)) as server:
        shared = [f"{server.url}/gone", f"{server.url}/bad"]
        first = fake_entry(model_bytes, urls=[*shared, f"{server.url}/zoo-model.onnx"])
        second = fake_entry(other, name="other", urls=[*shared, f"{server.url}/other.onnx"])
        store.pull_entry(first)
        store.pull_entry(second)
        store.cached_path(first).unlink()
        store.pull_entry(first)
        with pytest.raises(DownloadFailed) as failed:
            store.pull_entry(fake_entry(b"x", name="third", urls=shared))
    # /gone is a 404 for anyone; /bad is only wrong for the file it was checked against
    assert paths(server.behaviour) == [
        "/gone",
        "/bad",
        "/zoo-model.onnx",
        "/bad",
        "/other.onnx",
        "/zoo-model.onnx",
        "/bad",
    ]
    assert [(f.reason, f.url) for f in failed.value.failures] == [
        ("not-found", f"{server.url}/gone"),
        ("wrong-size", f"{server.url}/bad"),
    ]
    assert "failed earlier in this run, not retried" in failed.value.failures[0].detail
    assert "earlier" not in failed.value.failures[1].detail


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_connection_trouble_and_server_errors_are_asked_again(model_bytes, home, tmp_path):
    behaviour = Behaviour(files={"/m": model_bytes}, statuses={"/busy": 503}, ranges=False, cut_after=1000, cut_times=1)
    with Server(behaviour) as server:
        for _ in range(2):
            with pytest.raises(DownloadFailed, match="server-error"):
                fetch([f"{server.url}/busy"], tmp_path / "a.onnx", sha(model_bytes), retries=0)
        with pytest.raises(DownloadFailed, match="interrupted"):
            fetch([f"{server.url}/m"], tmp_path / "b.onnx", sha(model_bytes), retries=0)
        fetch([f"{server.url}/m"], tmp_path / "b.onnx", sha(model_bytes), retries=0)
    assert paths(behaviour) == ["/busy", "/busy", "/m", "/m"]
    assert (tmp_path / "b.onnx").read_bytes() == model_bytes


def test_messages_show_urls_without_credentials_or_query():
    assert (
        display_url("https://user:s3cret@mirror.example:8443/m/x.onnx?token=abc#f")
        == "https://mirror.example:8443/m/x.onnx?..."
    )
    assert (
        display_url("https://huggingface.co/onnxmodelzoo/a/resolve/main/a.onnx")
        == "https://huggingface.co/onnxmodelzoo/a/resolve/main/a.onnx"
    )
    assert display_url("ftp://me:pw@host/file") == "ftp://host/file"


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_a_query_token_stays_out_of_the_error(home, tmp_path):
    with Server(Behaviour()) as server, pytest.raises(DownloadFailed) as failed:
        fetch([f"{server.url}/m.onnx?token=s3cret", "ftp://me:pw@host/m.onnx"], tmp_path / "m.onnx")
    message = str(failed.value)
    assert "s3cret" not in message and "pw@" not in message
    assert message.splitlines()[1:] == [
        f"  {server.url}/m.onnx?...: not-found (HTTP 404 Not Found)",
        "  ftp://host/m.onnx: unsupported (only http and https URLs can be downloaded)",
    ]


# --- bounded downloads -------------------------------------------------------------------------

from imgclass.store.download import Limits  # noqa: E402


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_5xx_and_429_are_asked_again_honouring_retry_after(model_bytes, home):
    behaviour = Behaviour(files={"/m.onnx": model_bytes}, flaky={"/m.onnx": [503, 429, 502]},
                          headers={"Retry-After": "1"})  # fmt: skip
    with Server(behaviour) as server:
        result = run_cli("models", "pull", "--url", f"{server.url}/m.onnx", "--name", "mine")
    assert result.returncode == 0, result.stderr
    assert paths(behaviour) == ["/m.onnx"] * 4


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_server_errors_give_up_after_the_retries(model_bytes, tmp_path):
    behaviour = Behaviour(files={"/m.onnx": model_bytes}, statuses={"/m.onnx": 500})
    with Server(behaviour) as server, pytest.raises(DownloadFailed, match="server-error"):
        fetch([f"{server.url}/m.onnx"], tmp_path / "m.onnx", retries=2)
    assert paths(behaviour) == ["/m.onnx"] * 3
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_a_retry_after_past_the_deadline_fails_at_once(model_bytes, tmp_path):
    behaviour = Behaviour(files={"/m.onnx": model_bytes}, statuses={"/m.onnx": 503}, headers={"Retry-After": "86400"})
    with Server(behaviour) as server, pytest.raises(DownloadFailed, match="retry after 86400 s"):
        fetch([f"{server.url}/m.onnx"], tmp_path / "m.onnx")
    assert paths(behaviour) == ["/m.onnx"]


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_a_trickling_server_is_given_up_at_the_deadline(model_bytes, home):
    """1 byte every 0.2 s would take hours; the deadline ends it, and no .part file stays."""
    behaviour = Behaviour(files={"/m.onnx": model_bytes}, chunk=1, delay=0.2)
    with Server(behaviour) as server:
        result = run_cli("models", "pull", "--url", f"{server.url}/m.onnx", "--name", "slow",
                         env={"IMGCLASS_DOWNLOAD_TIMEOUT": "2"}, timeout=60)  # fmt: skip
    assert result.returncode == 3
    assert "too-slow (not done within 2 s (set IMGCLASS_DOWNLOAD_TIMEOUT for longer))" in result.stderr
    assert leftovers(home) == []


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_a_transfer_below_the_minimum_rate_is_given_up(model_bytes, tmp_path):
    behaviour = Behaviour(files={"/m.onnx": model_bytes}, chunk=50, delay=0.1)  # 500 bytes/s
    with Server(behaviour) as server, pytest.raises(DownloadFailed, match="too-slow") as failed:
        fetch([f"{server.url}/m.onnx"], tmp_path / "m.onnx", limits=Limits(deadline=60, min_rate=2000, window=1.0))
    assert "below the minimum of 2000" in str(failed.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_redirects_are_followed_to_http_only(model_bytes, tmp_path):
    behaviour = Behaviour(files={"/new.onnx": model_bytes}, redirects={"/ftp": "ftp://me:pw@host/m.onnx"})
    with Server(behaviour) as server:
        behaviour.redirects["/old"] = f"{server.url}/new.onnx"
        with_password = server.url.replace("http://", "http://me:pw@")
        assert fetch([f"{with_password}/old"], tmp_path / "a.onnx", sha(model_bytes)) == sha(model_bytes)
        assert behaviour.authorizations[1:] == [None]  # credentials are never carried across a redirect
        with pytest.raises(DownloadFailed) as failed:
            fetch([f"{server.url}/ftp"], tmp_path / "b.onnx")
    assert "unsupported (redirected to ftp://host/m.onnx; only http and https are followed)" in str(failed.value)
    assert "pw" not in str(failed.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx"]


@pytest.mark.parametrize("announced", [True, False])
@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_a_full_disk_says_no_space_and_leaves_nothing(model_bytes, home, announced):
    """A real full disk: a 32 KiB tmpfs over the models folder, in a private mount namespace."""
    from support import sandbox

    models = home / "models"
    models.mkdir(parents=True)
    behaviour = Behaviour(files={"/m.onnx": model_bytes}, no_length=not announced)
    with Server(behaviour) as server:
        result = sandbox.run_in(sandbox.full_disk(models, 32), "models", "pull", "--url", f"{server.url}/m.onnx",
                                "--name", "big", after=f"ls -A {models} >&2")  # fmt: skip
    assert result.returncode == 4, result.stderr
    assert "no space left on device" in result.stderr and "connection" not in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[1:] == []  # one line, and `ls` found nothing left behind
    if announced:
        assert f"needs {len(model_bytes)} bytes" in result.stderr


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_reason_phrases_from_a_server_reach_the_terminal_inert(home):
    behaviour = Behaviour(statuses={"/m.onnx": 404}, reasons={404: "Not Found \x1b]0;pwned\x07[bold red]x"})
    with Server(behaviour) as server:
        result = run_cli("models", "pull", "--url", f"{server.url}/m.onnx", "--name", "x")
    assert result.returncode == 3
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert "Not Found \\x1b]0;pwned\\x07[bold red]x" in result.stderr


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_credentials_and_tokens_are_never_stored_or_shown(model_bytes, home):
    behaviour = Behaviour(files={"/m.onnx?token=s3cret&sig=abc": model_bytes})
    with Server(behaviour) as server:
        url = server.url.replace("http://", "http://me:pa55word@") + "/m.onnx?token=s3cret&sig=abc"
        result = run_cli("models", "pull", "--url", url, "--name", "signed")
    assert result.returncode == 0, result.stderr
    assert behaviour.authorizations == ["Basic bWU6cGE1NXdvcmQ="]  # me:pa55word, as Basic authentication
    registry = (home / "models" / "registry.json").read_text()
    shown = [run_cli("models", "info", "signed").stdout, run_cli("models", "list", "-f", "json").stdout,
             run_cli("models", "info", "signed", "-f", "json").stdout, registry, result.stdout, result.stderr]  # fmt: skip
    for text in shown:
        assert "s3cret" not in text and "pa55word" not in text and "sig=" not in text
    assert json.loads(registry)["signed"]["origin"] == f"{server.url}/m.onnx?..."
