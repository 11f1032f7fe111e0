"""Expanding inputs: directories, globs, stdin, order, extensions, symlink loops."""

import io
import os

import pytest

from imgclass.data.sources import check_inputs, expand
from imgclass.errors import UsageError


@pytest.fixture
def tree(tmp_path):
    for rel in ["b.jpg", "a.PNG", "c.txt", "sub/z.jpeg", "sub/deeper/y.webp", "A b ü.jpg", "sub/.hidden.gif"]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return tmp_path


def rel(paths, root):
    return [os.path.relpath(p, root) for p in paths]


def test_directory_is_sorted_filtered_case_insensitive(tree):
    assert rel(expand([str(tree)]), tree) == ["A b ü.jpg", "a.PNG", "b.jpg"]


def test_recursive_walk_is_in_path_order(tree):
    assert rel(expand([str(tree)], recursive=True), tree) == [
        "A b ü.jpg",
        "a.PNG",
        "b.jpg",
        "sub/.hidden.gif",
        "sub/deeper/y.webp",
        "sub/z.jpeg",
    ]


def test_globs_and_explicit_files_and_duplicates(tree):
    got = rel(expand([str(tree / "*.jpg"), str(tree / "c.txt"), str(tree / "b.jpg")]), tree)
    assert got == ["A b ü.jpg", "b.jpg", "c.txt"]
    # A pattern that matches nothing is passed on as an input of its own (it becomes an error record) ...
    assert list(expand([str(tree / "*.nope"), str(tree / "b.jpg")])) == [str(tree / "*.nope"), str(tree / "b.jpg")]
    # ... and only a run where no input exists at all is refused up front.
    check_inputs([str(tree / "*.nope"), str(tree / "b.jpg")])
    with pytest.raises(UsageError, match="no input"):
        check_inputs([str(tree / "*.nope"), str(tree / "missing.jpg")])


def test_stdin_lists_paths(tree):
    stream = io.StringIO(f"{tree / 'b.jpg'}\n\n{tree / 'a.PNG'}\r\n")
    assert rel(expand(["-"], stdin=stream), tree) == ["b.jpg", "a.PNG"]


def test_symlink_loops_end(tree):
    os.symlink(tree, tree / "sub" / "loop")
    got = rel(expand([str(tree)], recursive=True), tree)
    assert got.count("b.jpg") == 1
    assert len(got) == 6


def test_broken_symlink_and_image_named_directory_are_yielded_for_an_error_record(tree):
    os.symlink(tree / "missing.jpg", tree / "dangling.jpg")
    (tree / "folder.jpg").mkdir()
    got = rel(expand([str(tree)]), tree)
    assert "dangling.jpg" in got and "folder.jpg" in got


def test_extension_list_is_what_pillow_registers():
    from PIL import Image

    from imgclass.data.sources import IMAGE_EXTENSIONS

    Image.init()
    registered = {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    assert IMAGE_EXTENSIONS <= registered
    assert {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"} <= IMAGE_EXTENSIONS
    assert ".h5" not in IMAGE_EXTENSIONS and ".mpg" not in IMAGE_EXTENSIONS
