"""Does bf16 keep top-1? The real MobileNet v2 on labelled photos, f32 against bf16.

    python benchmarks/bf16_accuracy.py [--model ../shared/models/mobilenetv2-12-int8.onnx] [--crops 30]

Labelled set: scikit-image photos filed under an ImageNet class (the six of tests/test_evaluate.py's
REAL_SET) and `--crops` random square crops of each (35-100 % of the short side, half mirrored),
each crop keeping its photo's label: "labelled-ish", the best this workplace has.

bf16 runs as `imgclass` runs it (`device="openvino", precision="bf16"`) where the CPU computes in
bf16 natively. Where it does not (imgclass refuses an emulated bf16), `--emulate` estimates it: every
float tensor in the graph is rounded to bf16 (Cast to BFLOAT16 and back after each node), which is
what OpenVINO's bf16 mode stores; its accumulations stay f32 as OpenVINO's do. The report says which.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.photo_crops import random_crops  # noqa: E402

REAL_SET = {"coffee.png": 967, "chelsea.png": 285, "rocket.jpg": 657, "motorcycle_left.png": 665,
            "astronaut.png": 834, "camera.png": 759}  # fmt: skip
DEFAULT_MODEL = ROOT / ".." / "shared" / "models" / "mobilenetv2-12-int8.onnx"


def labelled_set(work: Path, crops: int) -> list[tuple[Path, int]]:
    import skimage

    data = Path(skimage.__file__).parent / "data"
    items = [(data / name, label) for name, label in REAL_SET.items()]
    for name, label in REAL_SET.items():
        items += [(p, label) for p in random_crops([data / name], work / "crops" / name, crops, seed=7)]
    return items


def bf16_emulated(model: Path, out: Path) -> Path:
    """The graph with every float node output rounded to bf16 (and back to float for the next node)."""
    import onnx
    from onnx import TensorProto, helper, shape_inference

    graph_model = shape_inference.infer_shapes(onnx.load(str(model)))
    g = graph_model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.value_info, *g.output, *g.input]}
    nodes, rename = [], {}
    for node in g.node:
        node.input[:] = [rename.get(i, i) for i in node.input]
        nodes.append(node)
        for k, name in enumerate(node.output):
            if types.get(name) == TensorProto.FLOAT:
                raw = f"{name}__f32"
                node.output[k] = raw
                nodes.append(helper.make_node("Cast", [raw], [f"{name}__bf16"], to=TensorProto.BFLOAT16))
                nodes.append(helper.make_node("Cast", [f"{name}__bf16"], [name], to=TensorProto.FLOAT))
    del g.node[:]
    g.node.extend(nodes)
    _opset13(graph_model)
    onnx.save(graph_model, str(out))
    return out


def _opset13(model) -> None:
    """Cast to bfloat16 needs opset 13; Unsqueeze/Squeeze take their axes as an input from there on."""
    from onnx import numpy_helper

    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version < 13:
            opset.version = 13
    for node in model.graph.node:
        axes = [a for a in node.attribute if a.name == "axes"]
        if node.op_type in ("Unsqueeze", "Squeeze") and axes:
            name = f"{node.name or node.output[0]}__axes"
            model.graph.initializer.append(numpy_helper.from_array(np.array(list(axes[0].ints), np.int64), name))
            node.attribute.remove(axes[0])
            node.input.append(name)


def top1s(classifier, items) -> tuple[np.ndarray, np.ndarray]:
    records = list(classifier.classify([str(p) for p, _ in items], top=1000))
    probs = np.zeros((len(records), 1000))
    for i, record in enumerate(records):
        for p in record.predictions:
            probs[i, p.index] = p.probability
    return probs.argmax(1), probs


def main() -> None:
    import imgclass
    from imgclass.graph import openvino

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--crops", type=int, default=30)
    parser.add_argument("--emulate", action="store_true", help="estimate bf16 where the CPU lacks it")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "imgclass-bf16")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    items = labelled_set(args.work, args.crops)
    labels = np.array([label for _, label in items])
    native = "bf16" in openvino.native_precisions("CPU")
    f32 = imgclass.load(args.model, device="cpu")
    if native:
        how, bf16 = "native (OpenVINO, INFERENCE_PRECISION_HINT bf16)", imgclass.load(args.model, device="openvino",
                                                                                        precision="bf16")  # fmt: skip
    elif args.emulate:
        how, bf16 = (
            "emulated (every float tensor rounded to bf16; this CPU has no bf16)",
            imgclass.load(
                bf16_emulated(args.model, args.work / "bf16-emulated.onnx"), device="cpu", preset="torchvision"
            ),
        )
    else:
        sys.exit("this CPU does not compute in bf16 (imgclass refuses to emulate it); --emulate estimates it")
    a, pa = top1s(f32, items)
    b, pb = top1s(bf16, items)
    report = {
        "model": str(args.model), "images": len(items), "bf16": how,
        "top1_f32": round(float((a == labels).mean()) * 100, 2), "top1_bf16": round(float((b == labels).mean()) * 100, 2),
        "top1_answers_identical": round(float((a == b).mean()) * 100, 2),
        "max_probability_difference": round(float(np.abs(pa - pb).max()), 5),
    }  # fmt: skip
    report["top1_delta_points"] = round(report["top1_bf16"] - report["top1_f32"], 2)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
