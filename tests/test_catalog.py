"""The model catalog: well-formed, unique, matching the zoo's checksum table, shipped in the wheel."""

import csv
import json
import re
import subprocess
import sys
import zipfile

import pytest
from conftest import HERE, run_cli

from imgclass.data.presets import builtin_presets
from imgclass.store import catalog

TSV = HERE / "data" / "onnx-zoo-resnet-inception.tsv"
REQUIRED = {
    *(f"resnet{d}-v{v}-7" for d in (18, 34, 50, 101, 152) for v in (1, 2)),
    "resnet50-v1-12",
    "resnet50-v1-12-int8",
    "inception_v3_Opset17",
    "tv_resnet50_Opset17",
    "resnet50_Opset17",
}


def zoo_table():
    with open(TSV, newline="") as handle:
        return {row["path"]: row for row in csv.DictReader(handle, delimiter="\t")}


def test_entries_are_well_formed_and_unique():
    entries = catalog.entries()
    names = [e.name for e in entries] + [a for e in entries for a in e.aliases]
    assert len(names) == len(set(n.lower() for n in names))
    presets = builtin_presets()
    for e in entries:
        assert re.fullmatch(r"[0-9a-f]{64}", e.sha256), e.name
        assert e.size > 0 and e.file == f"{e.name}.onnx"
        assert e.preset in presets and e.urls and all(u.startswith("https://") for u in e.urls)
        assert e.license and e.source and e.family in ("resnet", "inception")
    assert REQUIRED <= {e.name for e in entries}


def test_checksums_and_sizes_match_the_zoo_table():
    table = zoo_table()
    raw = json.loads((HERE.parent / "models" / "catalog.json").read_text())
    for entry in raw["models"]:
        row = table[entry["zoo_path"]]
        assert (entry["sha256"], entry["size"]) == (row["sha256"], int(row["bytes"])), entry["name"]
        assert entry["zoo_path"].endswith("/" + entry["file"])


def test_aliases_and_default():
    assert catalog.find("inception-v3").name == "inception_v3_Opset17"
    assert catalog.find("resnet50").name == "resnet50-v1-12"
    assert catalog.default_model() == "inception-v3"
    assert catalog.find("inception_v3_Opset17").preset == "timm-inception"
    assert catalog.find("resnet50_Opset17").preset == "torchvision-v2"


def test_models_list_json_has_zoo_checksums(home):
    result = run_cli("models", "list", "--format", "json")
    assert result.returncode == 0
    listed = {m["name"]: m for m in json.loads(result.stdout)}
    table = zoo_table()
    assert (
        listed["resnet50-v1-12"]["sha256"]
        == table["validated/vision/classification/resnet/model/resnet50-v1-12.onnx"]["sha256"]
    )
    inception = next(m for m in listed.values() if "inception-v3" in m["aliases"])
    assert inception["sha256"] == table["Computer_Vision/inception_v3_Opset17_timm/inception_v3_Opset17.onnx"]["sha256"]
    for m in listed.values():
        assert {"name", "aliases", "sha256", "size", "preset", "cached"} <= set(m)
        assert m["cached"] is False


@pytest.mark.slow
def test_catalog_and_data_ship_inside_the_wheel(tmp_path):
    root = HERE.parent
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(root)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("imgclass-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for data in ("catalog.json", "presets.json", "imagenet1k_labels.json"):
        assert f"imgclass/models/{data}" in names


def test_models_info_of_a_file(make_model, home):
    path = make_model("tiny", spatial=224, input_name="data")
    result = run_cli("models", "info", path, "--format", "json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["preset"] == "torchvision" and info["signature"]["layout"] == "NCHW"
    assert info["signature"]["classes"] == 1000 and len(info["sha256"]) == 64
    catalog_info = json.loads(run_cli("models", "info", "resnet50", "--format", "json").stdout)
    assert catalog_info["cached"] is False and catalog_info["license"] == "Apache-2.0"


HF = "https://huggingface.co/onnxmodelzoo"
GITHUB_MEDIA = "https://media.githubusercontent.com/media/onnx/models/main"


def committed_catalog() -> dict:
    return json.loads((HERE.parent / "models" / "catalog.json").read_text())


def test_computer_vision_urls_start_with_the_stem_named_repository_then_legacy_then_folder_then_github():
    entries = [e for e in committed_catalog()["models"] if e["zoo_path"].startswith("Computer_Vision/")]
    assert {e["name"] for e in entries} == {"inception_v3_Opset17", "tv_resnet50_Opset17", "resnet50_Opset17"}
    for e in entries:
        folder, stem, path = e["zoo_path"].split("/")[1], e["name"], e["zoo_path"]
        assert folder != stem
        assert e["urls"] == [
            f"{HF}/{stem}/resolve/main/{stem}.onnx",
            f"{HF}/legacy_models/resolve/main/{path}",
            f"{HF}/{folder}/resolve/main/{folder}.onnx",
            f"{GITHUB_MEDIA}/{path}",
        ], stem
        assert e["file"] == f"{stem}.onnx"  # what a mirror serves: the zoo's own file name


def test_validated_urls_keep_their_order():
    entries = [e for e in committed_catalog()["models"] if e["zoo_path"].startswith("validated/")]
    assert len(entries) == 13
    for e in entries:
        stem, path = e["name"], e["zoo_path"]
        assert e["urls"] == [
            f"{HF}/{stem}/resolve/main/{stem}.onnx",
            f"{HF}/legacy_models/resolve/main/{path}",
            f"{GITHUB_MEDIA}/{path}",
        ], stem


def test_make_catalog_regenerates_the_committed_catalog(tmp_path):
    out = tmp_path / "catalog.json"
    script = HERE.parent / "scripts" / "make_catalog.py"
    subprocess.run([sys.executable, str(script), str(TSV), str(out)], check=True, capture_output=True)
    assert json.loads(out.read_text()) == committed_catalog()


def test_models_info_lists_the_default_models_urls_in_order(home):
    result = run_cli("models", "info", "inception-v3", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["urls"] == [
        f"{HF}/inception_v3_Opset17/resolve/main/inception_v3_Opset17.onnx",
        f"{HF}/legacy_models/resolve/main/Computer_Vision/inception_v3_Opset17_timm/inception_v3_Opset17.onnx",
        f"{HF}/inception_v3_Opset17_timm/resolve/main/inception_v3_Opset17_timm.onnx",
        f"{GITHUB_MEDIA}/Computer_Vision/inception_v3_Opset17_timm/inception_v3_Opset17.onnx",
    ]


def test_readme_names_the_file_a_mirror_serves_for_the_default_model():
    entry = catalog.find(catalog.default_model())
    readme = (HERE.parent / "docs" / "guide" / "models.md").read_text()  # the mirrors section moved there
    assert f"BASE_URL/{entry.file}   {entry.size} bytes\nsha256 {entry.sha256}" in readme
