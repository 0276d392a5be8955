"""The runtime object cache of compiler/build.py: a rebuild reuses an object only when the compiler,
the flags and the preprocessed source (headers included) are all the same."""

import subprocess

import pytest
from edgegrad.build import BuildError, compile_objects


@pytest.fixture
def tree(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("EDGEGRAD_OBJ_CACHE", str(cache))
    src = tmp_path / "src"
    src.mkdir()
    (src / "k.h").write_text("#define SCALE 2.0f\n")
    (src / "k.c").write_text('#include "k.h"\nfloat k(float x) { return SCALE * x; }\n')
    (src / "main.c").write_text('#include <stdio.h>\nfloat k(float);\nint main(void) { printf("%g\\n", k(3.0f)); '
                                "return 0; }\n")
    out = tmp_path / "out"
    out.mkdir()
    return src, out, cache


def _objects(src, out, flags=("-O2",)):
    return compile_objects(["gcc"], list(flags), [f"-I{src}"], [src / "k.c", out / "main.c"], out)


def _run(objs, out):
    subprocess.run(["gcc", *objs, "-o", str(out / "a.out")], check=True)
    return subprocess.run([str(out / "a.out")], check=True, capture_output=True, text=True).stdout.strip()


def test_hit_miss_and_header_change(tree):
    src, out, cache = tree
    (out / "main.c").write_text((src / "main.c").read_text())
    first = _objects(src, out)
    assert first[0].startswith(str(cache)) and not first[1].startswith(str(cache))  # the build folder's own source
    assert _run(first, out) == "6"
    assert _objects(src, out) == first  # same source, flags, compiler: the cached object
    (src / "k.h").write_text("#define SCALE 5.0f\n")  # only the header changes
    changed = _objects(src, out)
    assert changed[0] != first[0] and _run(changed, out) == "15"
    assert _objects(src, out, ("-O2", "-DEXTRA=1"))[0] not in (first[0], changed[0])  # another flag
    assert not list(cache.glob("*.tmp.o"))


def test_compile_error_leaves_nothing_in_the_cache(tree):
    src, out, cache = tree
    (out / "main.c").write_text((src / "main.c").read_text())
    (src / "k.c").write_text("float k(float x) { return x +; }\n")
    with pytest.raises(BuildError, match="k.c"):
        _objects(src, out)
    assert not list(cache.glob("*.o"))


def test_cache_off(tree, monkeypatch):
    src, out, cache = tree
    (out / "main.c").write_text((src / "main.c").read_text())
    monkeypatch.setenv("EDGEGRAD_OBJ_CACHE", "off")
    objs = _objects(src, out)
    assert all(o.startswith(str(out)) for o in objs) and _run(objs, out) == "6"
    assert not cache.exists()


def test_unwritable_cache_builds_without_it(tree, monkeypatch):
    src, out, cache = tree
    (out / "main.c").write_text((src / "main.c").read_text())
    blocker = cache.parent / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("EDGEGRAD_OBJ_CACHE", str(blocker / "cache"))  # mkdir fails: a file is in the way
    objs = _objects(src, out)
    assert all(o.startswith(str(out)) for o in objs) and _run(objs, out) == "6"
