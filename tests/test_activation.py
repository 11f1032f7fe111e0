"""Scores as the model means them: Softmax, LogSoftmax, Sigmoid (multi-label) or logits heads."""

import csv
import io
import json

import numpy as np
import onnxruntime as ort
import pytest
from conftest import jsonl, run_cli

import imgclass
from imgclass.cli import run
from imgclass.cli.environment import Environment
from imgclass.data.images import load_rgb
from imgclass.errors import ConfigError, UsageError
from imgclass.graph.activation import Activation, choose_activation, detect, sigmoid, softmax
from imgclass.graph.ranking import Ranker
from imgclass.output.sinks import read_delimited
from imgclass.records import Prediction, Record
from imgclass.store.loader import inspect_file

HEADS = ("logits", "softmax", "logsoftmax", "sigmoid")
SHAPE_ONLY = ((), ("Reshape", "Identity"))


def heads(make_model, behind=(), **sig):
    """The same seeded weights behind each head."""
    return {head: make_model("tiny", seed=5, spatial=32, head=head, behind=behind, **sig) for head in HEADS}


def raw_outputs(model, image) -> np.ndarray:
    """What the graph returns for `image`, preprocessed exactly as imgclass does (float64)."""
    clf = imgclass.load(model)
    sample = clf.model.transform(load_rgb(str(image), clf.decode))[None]
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": sample})[0].astype(np.float64)


def printed(model, image, *args) -> tuple[dict, np.ndarray]:
    """The record the installed entry point prints, and its probabilities by class index."""
    result = run_cli("predict", image, "--model", model, "--top", "1000", "--threshold", "0", "-f", "jsonl", *args)
    assert result.returncode == 0, result.stderr
    (record,) = jsonl(result.stdout)
    probs = np.full(1000, np.nan)
    for p in record["predictions"]:
        probs[p["index"]] = p["probability"]
    assert not np.isnan(probs).any()
    return record, probs


@pytest.mark.parametrize("behind", SHAPE_ONLY, ids=["bare", "behind-reshape-identity"])
@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_each_head_prints_the_probabilities_it_means(make_model, photos, home, behind):
    models = heads(make_model, behind)
    image = photos["chelsea.png"]
    outputs = {head: raw_outputs(path, image) for head, path in models.items()}
    logits = outputs["logits"]
    # One set of weights: the heads really are the logits passed through each op.
    assert np.abs(outputs["softmax"] - softmax(logits)).max() < 1e-6
    assert np.abs(outputs["sigmoid"] - sigmoid(logits)).max() < 1e-6
    expected = {
        "logits": softmax(logits)[0],
        "softmax": outputs["softmax"][0],
        "logsoftmax": np.exp(outputs["logsoftmax"][0]),
        "sigmoid": sigmoid(logits)[0],
    }
    seen = {}
    for head, path in models.items():
        record, probs = printed(path, image)
        seen[head] = probs
        assert np.abs(probs - expected[head]).max() <= 1e-6, head
        assert record["multi_label"] is (head == "sigmoid")
    # Acceptance: the sigmoid scores are not renormalised (the old softmax-on-top was far off) ...
    assert seen["sigmoid"].sum() > 5
    assert np.abs(seen["sigmoid"] - softmax(logits)[0]).max() > 0.3
    assert np.abs(seen["sigmoid"] - softmax(sigmoid(logits))[0]).max() > 0.3
    # ... and a LogSoftmax export prints what its Softmax twin prints.
    assert np.abs(seen["logsoftmax"] - seen["softmax"]).max() <= 1e-6
    assert seen["softmax"].sum() == pytest.approx(1.0, abs=1e-5)


def test_the_head_is_read_through_shape_only_ops(make_model):
    chain = ("Squeeze", "Cast", "Transpose", "Flatten", "Reshape", "Identity")
    for head, op in (("softmax", "Softmax"), ("logsoftmax", "LogSoftmax"), ("sigmoid", "Sigmoid")):
        signature = inspect_file(make_model("tiny", seed=5, spatial=32, head=head, behind=chain))
        assert signature.head == op
        found = detect(signature)
        assert (found.name, found.in_graph, found.source) == (head, True, f"detected ({op} at the output)")
    logits = detect(inspect_file(make_model("tiny", seed=5, spatial=32, behind=("Reshape",))))
    assert (logits.name, logits.in_graph, logits.applied) == ("softmax", False, "softmax")
    assert logits.source == "detected (Gemm at the output: logits)"


def test_quantised_heads_are_read_too(make_model, photos, home):
    model = make_model("tiny", seed=5, spatial=32, head="sigmoid", behind=("QDQ", "Reshape"))
    clf = imgclass.load(model)
    assert clf.model.signature.head == "Sigmoid" and clf.multi_label
    image = photos["chelsea.png"]
    graph = raw_outputs(model, image)[0]
    logits = raw_outputs(make_model("tiny", seed=5, spatial=32), image)[0]
    probs = {p.index: p.probability for p in clf.predict(image, top=1000, threshold=0).predictions}
    assert [probs[i] for i in range(1000)] == graph.tolist()  # the int8 scores as they are
    assert np.abs(graph - sigmoid(logits[None])[0]).max() <= 0.5 / 255 + 1e-6
    from imgclass.graph.signature import Signature

    for op, name in (("QLinearSigmoid", "sigmoid"), ("QLinearSoftmax", "softmax")):  # com.microsoft int8 ops
        found = detect(Signature("x", "NCHW", 32, 32, "float32", None, "y", 10, op))
        assert (found.name, found.in_graph) == (name, True)


def test_a_sigmoid_behind_a_value_changing_op_is_not_taken_for_a_head(make_model, tmp_path):
    import onnx
    from onnx import helper

    model = onnx.load(str(make_model("tiny", seed=5, spatial=32, head="sigmoid")))
    graph = model.graph
    graph.node[-1].output[0] = "scores"
    graph.initializer.append(onnx.numpy_helper.from_array(np.array(2.0, np.float32), "two"))
    graph.node.append(helper.make_node("Mul", ["scores", "two"], ["logits"]))
    path = tmp_path / "mul.onnx"
    onnx.save(model, str(path))
    found = detect(inspect_file(path))
    assert (found.name, found.in_graph) == ("softmax", False) and "Mul at the output" in found.source


def test_logsoftmax_stays_equal_to_softmax_on_purpose():
    logits = np.array([[1.0, 2.0, 3.0, 0.0, -1.0, 0.5]])
    labels = tuple(f"c{i}" for i in range(6))
    log_probs = logits - np.log(np.exp(logits).sum())
    in_graph = Ranker(labels, 0, Activation("logsoftmax", True, "t"), top=6).rank(log_probs)[0]
    from_logits = Ranker(labels, 0, Activation("softmax", False, "t"), top=6).rank(logits)[0]
    # Told "logsoftmax" but handed logits: softmax, which exp would get wrong.
    told = Ranker(labels, 0, Activation("logsoftmax", False, "t"), top=6).rank(logits)[0]
    assert [p.index for p in in_graph] == [p.index for p in from_logits] == [p.index for p in told]
    for a, b, c in zip(in_graph, from_logits, told, strict=True):
        assert a.probability == pytest.approx(b.probability, abs=1e-12) == c.probability


def test_sigmoid_is_stable_and_none_is_untouched():
    x = np.array([[-800.0, -30.0, 0.0, 30.0, 800.0]])
    assert np.isfinite(sigmoid(x)).all()
    assert sigmoid(x)[0].tolist() == pytest.approx(
        [0.0, 9.357622968839299e-14, 0.5, 1 - 9.357622968839299e-14, 1.0], abs=1e-15
    )
    scores = np.array([[0.2, 0.9, 0.7]], np.float32)
    as_is = Activation("none", False, "flag").probabilities(scores)
    assert as_is.tolist() == scores.astype(np.float64).tolist()
    assert Activation("sigmoid", True, "t").probabilities(scores).tolist() == as_is.tolist()
    assert Activation("sigmoid", False, "t").probabilities(scores).tolist() == sigmoid(scores).tolist()


def metadata_model(make_model, value, head="logits"):
    return make_model("tiny", seed=5, spatial=32, head=head, metadata=(("imgclass.activation", value),))


def test_metadata_and_the_flag_override_detection(make_model, photos, home):
    image = photos["coffee.png"]
    logits = raw_outputs(make_model("tiny", seed=5, spatial=32), image)[0]
    tagged = metadata_model(make_model, "Sigmoid")  # a logits graph whose exporter says: multi-label
    clf = imgclass.load(tagged)
    assert (clf.model.activation.name, clf.model.activation.source) == ("sigmoid", "metadata imgclass.activation")
    assert clf.multi_label and clf.info["multi_label"] and clf.info["activation_applied"] == "sigmoid"
    record, probs = printed(tagged, image)
    assert record["multi_label"] is True and np.abs(probs - sigmoid(logits[None])[0]).max() <= 1e-6
    # The flag beats the metadata (case-insensitive).
    record, probs = printed(tagged, image, "--activation", "SOFTMAX")
    assert record["multi_label"] is False and np.abs(probs - softmax(logits[None])[0]).max() <= 1e-6
    # A Sigmoid head told "sigmoid" is not squashed twice; told "none", its scores stay but are single-label.
    sig_head = make_model("tiny", seed=5, spatial=32, head="sigmoid")
    assert imgclass.load(sig_head, activation="sigmoid").model.activation.applied == "none"
    record, probs = printed(sig_head, image, "--activation", "none")
    assert record["multi_label"] is False and np.abs(probs - sigmoid(logits[None])[0]).max() <= 1e-6
    # "auto" is detection again, metadata first.
    assert imgclass.load(tagged, activation="auto").model.activation.name == "sigmoid"


def test_bad_activation_values_say_where_they_came_from(make_model, home):
    broken = metadata_model(make_model, "relu")
    with pytest.raises(ConfigError, match=r"metadata imgclass.activation 'relu': use auto, softmax, sigmoid"):
        imgclass.load(broken)
    assert imgclass.load(broken, activation="softmax").model.activation.source == "flag"  # the flag is enough
    with pytest.raises(UsageError, match="activation 'tanh'"):
        imgclass.load(make_model("tiny", seed=5, spatial=32), activation="tanh")
    result = run_cli("models", "info", broken)
    assert result.returncode == 3 and "imgclass.activation 'relu'" in result.stderr
    result = run_cli("predict", "x.jpg", "--activation", "tanh", "-m", broken)
    assert result.returncode == 2 and "tanh" in result.stderr


def test_multi_label_threshold_defaults_to_one_half(make_model, photos, home):
    clf = imgclass.load(make_model("tiny", seed=5, spatial=32, head="sigmoid"))
    everything = clf.predict(photos["china.jpg"], top=1000, threshold=0)
    below = [p for p in everything.predictions if p.probability < 0.5]
    above = [p for p in everything.predictions if p.probability >= 0.5]
    assert below and above  # the seeded head has classes on both sides
    default = clf.predict(photos["china.jpg"], top=1000)
    assert default.predictions == above
    assert clf.predict(photos["china.jpg"], top=3).predictions == above[:3]
    # Single-label models keep every ranked class unless told otherwise.
    single = imgclass.load(make_model("tiny", seed=5, spatial=32, head="softmax"))
    assert len(single.predict(photos["china.jpg"], top=7).predictions) == 7


def test_a_multi_label_record_round_trips_in_every_format(make_model, photos, home, tmp_path):
    model = make_model("tiny", seed=5, spatial=32, head="sigmoid", behind=("Reshape",))
    images = [photos["china.jpg"], photos["chelsea.png"], tmp_path / "missing.png"]
    (tmp_path / "missing.png").write_text("not an image")
    base = ["predict", *images, "--model", model, "--top", "4"]
    library = list(imgclass.load(model).classify(images, top=4))
    assert all(r.multi_label for r in library) and library[2].error and library[0].predictions
    by_format = {fmt: run_cli(*base, "-f", fmt) for fmt in ("json", "jsonl", "csv", "tsv")}
    assert all(r.returncode == 1 for r in by_format.values())
    assert [Record.from_dict(d) for d in json.loads(by_format["json"].stdout)] == library
    assert [Record.from_dict(d) for d in jsonl(by_format["jsonl"].stdout)] == library
    for fmt in ("csv", "tsv"):
        text = by_format[fmt].stdout
        rows = list(csv.reader(io.StringIO(text), delimiter="," if fmt == "csv" else "\t"))
        assert rows[0] == ["path", "rank", "index", "label", "probability", "error", "path_bytes", "multi_label"]
        assert all(row[7] == "true" for row in rows[1:])
        assert read_delimited(text, fmt, str(model), "torchvision") == library


def test_single_label_csv_has_no_multi_label_column_and_resume_refuses_a_mix(make_model, photos, home, tmp_path):
    single = make_model("tiny", seed=5, spatial=32)
    multi = make_model("tiny", seed=5, spatial=32, head="sigmoid")
    out = tmp_path / "out.csv"
    assert run_cli("batch", photos["china.jpg"], "-m", single, "-o", out).returncode == 0
    text = out.read_text()
    assert text.splitlines()[0] == "path,rank,index,label,probability,error,path_bytes"
    assert [r.multi_label for r in read_delimited(text, "csv")] == [False]
    result = run_cli("batch", photos["coffee.png"], "-m", multi, "-o", out, "--resume")
    # The job header beside the file names the other model first; files without one are refused by their rows.
    refused = "holds single-label rows" in result.stderr or "was written by another job" in result.stderr
    assert result.returncode == 2 and refused and "multi-label" not in text, result.stderr
    assert out.read_text() == text  # untouched
    multi_out = tmp_path / "multi.tsv"
    assert run_cli("batch", photos["china.jpg"], "-m", multi, "-o", multi_out).returncode == 0
    assert (
        run_cli("batch", photos["china.jpg"], photos["coffee.png"], "-m", multi, "-o", multi_out, "--resume").returncode
        == 0
    )
    assert [r.path for r in read_delimited(multi_out.read_text(), "tsv")] == [
        str(photos["china.jpg"]),
        str(photos["coffee.png"]),
    ]
    for header in tmp_path.glob(".multi.tsv*imgclass-job"):
        header.unlink()  # a file from before job headers: its rows alone say what it holds
    result = run_cli("batch", photos["flower.jpg"], "-m", single, "-o", multi_out, "--resume")
    assert result.returncode == 2 and "holds multi-label rows" in result.stderr, result.stderr


def test_records_say_multi_label_always_and_check_it():
    record = Record("a.jpg", "m", "p", [Prediction(1, 3, "x", 0.75)], None, True)
    assert list(record.to_dict()) == ["path", "model", "preset", "multi_label", "predictions", "error"]
    assert Record.from_dict(json.loads(json.dumps(record.to_dict()))) == record
    old = {"path": "a.jpg", "model": "m", "preset": "p", "predictions": [], "error": None}
    assert Record.from_dict(old).multi_label is False  # written before the field existed
    with pytest.raises(ValueError, match="multi_label"):
        Record.from_dict({**old, "multi_label": "yes"})


def test_verbose_info_and_models_info_name_the_activation_and_why(make_model, photos, home):
    model = make_model("tiny", seed=5, spatial=32, head="sigmoid", behind=("Identity",))
    result = run_cli("predict", photos["china.jpg"], "-m", model, "-v", "-f", "jsonl")
    assert result.returncode == 0
    assert (
        "scores sigmoid (multi-label, independent; applied: none) [detected (Sigmoid at the output)]" in result.stderr
    )
    info = json.loads(run_cli("models", "info", model, "-f", "json").stdout)
    assert (info["activation"], info["activation_source"], info["multi_label"]) == (
        "sigmoid", "detected (Sigmoid at the output)", True)  # fmt: skip
    assert info["signature"]["head"] == "Sigmoid" and info["signature"]["softmax_in_graph"] is False
    table = run_cli("models", "info", model).stdout
    assert "activation_source" in table and "detected (Sigmoid at the output)" in table
    flagged = run_cli("predict", photos["china.jpg"], "-m", model, "-v", "--activation", "none", "-f", "jsonl")
    assert "scores none (single-label; applied: none) [flag]" in flagged.stderr
    library = imgclass.load(model).info
    assert {k: library[k] for k in ("activation", "activation_source", "activation_applied", "multi_label")} == {
        "activation": "sigmoid", "activation_source": "detected (Sigmoid at the output)",
        "activation_applied": "none", "multi_label": True}  # fmt: skip


def test_the_table_says_independent_scores(make_model, photos, home, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    for head, expected in (("sigmoid", True), ("softmax", False)):
        model = make_model("tiny", seed=5, spatial=32, head=head)
        out, err = io.StringIO(), io.StringIO()
        env = Environment(stdout=out, stderr=err, stdout_isatty=True, stderr_isatty=False, no_color=True)
        assert run(["predict", str(photos["china.jpg"]), "-m", str(model), "--threshold", "0"], env) == 0
        assert ("independent scores (multi-label)" in out.getvalue()) is expected
        out = io.StringIO()
        env = Environment(stdout=out, stderr=err, stdout_isatty=True, stderr_isatty=False, no_color=True)
        assert run(["batch", str(photos["china.jpg"]), str(photos["coffee.png"]), "-m", str(model)], env) == 0
        lines = out.getvalue().splitlines()
        assert lines[0].startswith("independent scores (multi-label)") is expected
        assert len(lines) == (3 if expected else 2)


def test_choose_activation_order():
    from imgclass.graph.signature import Signature

    def sig(head, metadata=None):
        return Signature("x", "NCHW", 32, 32, "float32", None, "y", 10, head, metadata or {})

    assert choose_activation(sig("Sigmoid"), None, "m").source == "detected (Sigmoid at the output)"
    meta = sig("Softmax", {"imgclass.activation": " LogSoftmax "})
    assert choose_activation(meta, None, "m") == Activation("logsoftmax", False, "metadata imgclass.activation")
    assert choose_activation(meta, "none", "m") == Activation("none", False, "flag")
    assert choose_activation(sig("LogSoftmax"), "logsoftmax", "m").applied == "exp"
    assert choose_activation(sig(""), None, "m").source == "detected (no op at the output: logits)"
