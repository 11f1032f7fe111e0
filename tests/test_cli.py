"""The command line through the real entry point (subprocess) and Typer's runner."""

import csv
import io
import json
import os
import subprocess
import sys

import onnx
import pytest
from conftest import jsonl, run_cli
from onnx import TensorProto, helper

from imgclass._util.version import __version__
from imgclass.cli import run
from imgclass.cli.environment import Environment


def run_inprocess(*args, **env_fields):
    """Run a command line in this process with captured streams; returns (code, stdout, stderr)."""
    env = Environment(stdout=io.StringIO(), stderr=io.StringIO(), **env_fields)
    code = run([str(a) for a in args], env)
    return code, env.stdout.getvalue(), env.stderr.getvalue()


SCHEMA = {"path", "model", "preset", "multi_label", "predictions", "error"}  # multi_label: always, true or false
PREDICTION = {"rank", "index", "label", "probability"}


@pytest.fixture
def tiny(make_model):
    return make_model("tiny", spatial=None)


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_version_through_console_script_and_module():
    assert run_cli("--version").stdout.strip() == f"imgclass {__version__}"
    # cwd: away from the checkout, so that the installed package is the one `-m` finds
    module = subprocess.run(
        [sys.executable, "-m", "imgclass", "--version"], capture_output=True, text=True, cwd=os.path.expanduser("~")
    )
    assert module.returncode == 0 and module.stdout.strip() == f"imgclass {__version__}"


def test_jsonl_is_default_when_piped_and_schema_holds(tiny, photos, home):
    result = run_cli("predict", photos["china.jpg"], photos["chelsea.png"], "--model", tiny)
    assert result.returncode == 0
    assert result.stderr == ""
    records = jsonl(result.stdout)
    assert [r["path"] for r in records] == [str(photos["china.jpg"]), str(photos["chelsea.png"])]
    for record in records:
        assert set(record) == SCHEMA
        assert record["error"] is None and record["multi_label"] is False
        assert record["model"] == str(tiny) and record["preset"] == "torchvision"
        assert len(record["predictions"]) == 5
        assert all(set(p) == PREDICTION for p in record["predictions"])
        probs = [p["probability"] for p in record["predictions"]]
        assert probs == sorted(probs, reverse=True) and 0 < probs[0] <= 1


def test_json_csv_tsv_parse_and_agree(tiny, photos, home):
    base = ["predict", photos["china.jpg"], photos["coffee.png"], "--model", tiny, "--top", "3"]
    as_jsonl = jsonl(run_cli(*base, "-f", "jsonl").stdout)
    as_json = json.loads(run_cli(*base, "-f", "json").stdout)
    assert as_json == as_jsonl
    for fmt, delimiter in (("csv", ","), ("tsv", "\t")):
        rows = list(csv.DictReader(io.StringIO(run_cli(*base, "-f", fmt).stdout), delimiter=delimiter))
        assert list(rows[0]) == ["path", "rank", "index", "label", "probability", "error", "path_bytes"]
        assert len(rows) == 6
        flat = [(r["path"], int(r["rank"]), int(r["index"]), r["label"], float(r["probability"])) for r in rows]
        expected = [
            (rec["path"], p["rank"], p["index"], p["label"], p["probability"])
            for rec in as_jsonl
            for p in rec["predictions"]
        ]
        assert flat == expected


def test_output_file_format_from_extension(tiny, photos, tmp_path, home):
    out = tmp_path / "res.csv"
    result = run_cli("predict", photos["china.jpg"], "--model", tiny, "--output", out)
    assert result.returncode == 0 and result.stdout == ""
    assert out.read_text().splitlines()[0] == "path,rank,index,label,probability,error,path_bytes"


def test_top_threshold_and_all_classes(tiny, photos, home):
    records = jsonl(run_cli("predict", photos["china.jpg"], "--model", tiny, "--top", "5000").stdout)
    assert len(records[0]["predictions"]) == 1000
    assert abs(sum(p["probability"] for p in records[0]["predictions"]) - 1.0) < 1e-6
    cut = records[0]["predictions"][2]["probability"]
    thresholded = jsonl(
        run_cli("predict", photos["china.jpg"], "--model", tiny, "--top", "50", "--threshold", cut).stdout
    )
    assert [p["index"] for p in thresholded[0]["predictions"]] == [p["index"] for p in records[0]["predictions"][:3]]


def test_model_from_environment_and_paths_from_stdin(tiny, photos, home):
    listing = f"{photos['coffee.png']}\n{photos['china.jpg']}\n"
    result = run_cli("batch", "-", env={"IMGCLASS_MODEL": str(tiny)}, input=listing)
    assert result.returncode == 0, result.stderr
    assert [r["path"] for r in jsonl(result.stdout)] == [str(photos["coffee.png"]), str(photos["china.jpg"])]


def test_failed_input_gets_record_and_one_stderr_line(tiny, photos, tmp_path, home):
    bad = tmp_path / "broken.jpg"
    bad.write_text("this is not an image")
    result = run_cli("predict", photos["china.jpg"], bad, photos["coffee.png"], "--model", tiny)
    assert result.returncode == 1
    records = jsonl(result.stdout)
    assert [r["error"] is None for r in records] == [True, False, True]
    assert records[1]["predictions"] == [] and "not an image" in records[1]["error"]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--top", "0"], "--top"),
        (["--format", "xml"], "--format"),
        (["--preset", "nope"], "--preset"),
        (["--device", "tpu"], "--device"),
        (["--mean", "1,2"], "--mean"),
    ],
)
def test_usage_errors_exit_2(tiny, photos, home, args, message):
    result = run_cli("predict", photos["china.jpg"], "--model", tiny, *args)
    assert result.returncode == 2
    assert message in result.stderr and result.stdout == ""
    assert "Traceback" not in result.stderr


def test_no_usable_input_is_a_usage_error_before_the_model_is_touched(home, tmp_path):
    # The model does not exist either: the input is checked first, so this is exit 2, not 3.
    result = run_cli("batch", tmp_path / "nothing-here", "--model", tmp_path / "missing.onnx")
    assert result.returncode == 2 and "no input" in result.stderr and "nothing-here" in result.stderr
    # A typo in a photo name is found before the default model would be downloaded.
    offline = run_cli("predict", tmp_path / "typo.jpg", env={"IMGCLASS_OFFLINE": "1"})
    assert offline.returncode == 2 and "typo.jpg" in offline.stderr


def test_a_missing_path_among_others_is_an_error_record(tiny, photos, home, tmp_path):
    missing = tmp_path / "gone.jpg"
    result = run_cli("batch", photos["china.jpg"], missing, tmp_path / "*.nomatch", photos["coffee.png"], "-m", tiny)
    assert result.returncode == 1
    records = jsonl(result.stdout)
    assert [r["path"] for r in records] == [
        str(photos["china.jpg"]),
        str(missing),
        str(tmp_path / "*.nomatch"),
        str(photos["coffee.png"]),
    ]
    assert [r["error"] is None for r in records] == [True, False, False, True]
    assert "no such file" in records[1]["error"] and "no file matches" in records[2]["error"]


def _write(model, path):
    onnx.save(model, str(path))
    return path


def two_input_model(path):
    x = helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 3, 8, 8])
    out = helper.make_tensor_value_info("o", TensorProto.FLOAT, [1, 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["o"])], "two", [x, y], [out])
    return _write(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def feature_map_model(path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    out = helper.make_tensor_value_info("o", TensorProto.FLOAT, [1, 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["o"])], "fm", [x], [out])
    return _write(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


@pytest.mark.parametrize(
    "maker, message",
    [
        (two_input_model, "2 inputs"),
        (feature_map_model, "no output shaped [N, classes]"),
        (lambda p: (p.write_bytes(b"\x00not onnx at all\xff" * 10), p)[1], "ONNX"),
    ],
)
def test_model_that_is_not_a_classifier_exits_3(photos, tmp_path, home, maker, message):
    model = maker(tmp_path / "m.onnx")
    result = run_cli("predict", photos["china.jpg"], "--model", model)
    assert result.returncode == 3
    assert message in result.stderr and str(model) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""


def test_inprocess_models_presets_and_info(home):
    code, out, _ = run_inprocess("models", "presets", "--format", "json")
    assert code == 0
    names = {p["name"] for p in json.loads(out)}
    assert {
        "torchvision",
        "torchvision-v2",
        "timm-inception",
        "keras-tf",
        "keras-caffe",
        "tf-slim",
        "mlperf-resnet",
    } <= names
    code, out, _ = run_inprocess("info", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert "CPUExecutionProvider" in data["providers_available"] and data["cache"] == str(home)
    assert data["cache_models"] == str(home / "models")
    code, path, _ = run_inprocess("models", "path")
    assert path.strip() == data["cache_models"]  # `models path` and `info` name the same folder


def test_inprocess_predict_with_verbose_reports_preset(tiny, photos, home):
    code, out, err = run_inprocess("predict", photos["china.jpg"], "--model", tiny, "-f", "jsonl", "-v")
    assert code == 0
    record = json.loads(out.splitlines()[0])
    assert record["preset"] == "torchvision"
    assert "preset torchvision" in err


def test_table_format_shows_labels(tiny, photos, home):
    result = run_cli("predict", photos["china.jpg"], "--model", tiny, "-f", "table", "--top", "2")
    assert result.returncode == 0
    top = jsonl(run_cli("predict", photos["china.jpg"], "--model", tiny, "--top", "2").stdout)[0]["predictions"]
    for p in top:
        assert p["label"] in result.stdout
    assert "\x1b[" not in result.stdout  # NO_COLOR


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_progress_bar_only_on_a_terminal(tiny, photos, tmp_path, home):
    import os
    import pty

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.png").write_bytes(photos["chelsea.png"].read_bytes())
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*__import__("conftest").imgclass_command(), "batch", str(folder), "--model", str(tiny)],
        stdout=subprocess.PIPE,
        stderr=slave,
        env={**os.environ, "TERM": "xterm", "NO_COLOR": "1"},
    )
    os.close(slave)
    stdout, _ = proc.communicate(timeout=120)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert proc.returncode == 0
    assert len(stdout.decode().splitlines()) == 3  # records stay on stdout, as jsonl
    assert b"3 classified, 0 failed" in seen  # the terminal on stderr gets the summary
    assert b"{" not in seen


COMPLETE_MODEL = {
    "_IMGCLASS_COMPLETE": "complete_bash",
    "COMP_WORDS": "imgclass predict --model incep",
    "COMP_CWORD": "3",
}


@pytest.mark.parametrize(
    "args, env",
    [(["--help"], {}), (["predict", "--help"], {}), (["models", "list"], {}), (["models", "list", "--format", "json"], {}),
     (["--version"], {}), (["serve", "--help"], {}), ([], COMPLETE_MODEL)],
    ids=["help", "predict-help", "models-list", "models-list-json", "version", "serve-help", "completion"],
)  # fmt: skip
@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_help_models_list_and_completion_import_neither_numpy_nor_onnxruntime(args, env, home):
    code = (
        "import sys\n"
        f"sys.argv = ['imgclass', *{args!r}]\n"
        "from imgclass.cli import main\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    assert exit.code in (0, None), exit.code\n"
        "heavy = [m for m in ('numpy', 'onnxruntime', 'onnx', 'PIL', 'markdown_it', 'pygments') if m in sys.modules]\n"
        "sys.stderr.write('HEAVY=' + ','.join(heavy))\n"
    )
    # cwd: away from the checkout, so that the installed package is the one imported
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=home.parent,
                            env={**os.environ, **env})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.endswith("HEAVY=")
    if env:
        assert "inception-v3" in result.stdout.splitlines()


@pytest.mark.parametrize("command, extra", [("batch", "imgclass[ray]"), ("embed", "imgclass[parquet]")])
def test_help_names_the_extra_in_brackets(command, extra):
    """Rich markup must not eat `[ray]`: the help would tell people to install the wrong thing."""
    result = run_cli(command, "--help", env={"COLUMNS": "200"})
    assert result.returncode == 0 and extra in result.stdout, result.stdout
