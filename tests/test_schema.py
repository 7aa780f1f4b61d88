"""``graphnet schema``: a JSON Schema (draft-07) built from the registry that accepts every spec
in specs/ and rejects bad ones, read by the ``jsonschema`` package and by ``taplo``, the TOML
toolkit behind VS Code's Even Better TOML."""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from graphnet.registry import get_registry
from graphnet.schema import spec_schema

jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.toml")) + sorted((ROOT / "specs").glob("*.json"))
PRELU = ROOT / "plugins" / "examples" / "prelu.py"


def read(path: Path) -> dict:
    return tomllib.loads(path.read_text()) if path.suffix == ".toml" else json.loads(
        path.read_text())


@pytest.fixture(scope="module")
def schema() -> dict:
    return spec_schema(get_registry())


def errors(schema, data) -> list[str]:
    return [error.message for error in jsonschema.Draft7Validator(schema).iter_errors(data)]


def test_the_schema_is_valid_draft_7_and_accepts_every_example(schema):
    jsonschema.Draft7Validator.check_schema(schema)
    for path in SPECS:
        assert errors(schema, read(path)) == [], path


LENET = ROOT / "specs" / "lenet5.toml"
RESNET = ROOT / "specs" / "resnet18.toml"


def _bad(base: Path, change) -> dict:
    data = copy.deepcopy(read(base))
    change(data)
    return data


BAD = {
    "unknown op": (LENET, lambda d: d["nodes"][0].update(op="conv3d"), "is not one of"),
    "unknown attribute": (LENET, lambda d: d["nodes"][0].update(kernal=3), "'kernal' was"),
    "wrong type": (LENET, lambda d: d["nodes"][0].update(filters="six"), "is not of type"),
    "below the minimum": (LENET, lambda d: d["nodes"][0].update(filters=0), "less than"),
    "missing required attribute": (LENET, lambda d: d["nodes"][0].pop("kernel"),
                                   "'kernel' is a required property"),
    "unknown section": (LENET, lambda d: d.update(trian={}), "'trian' was unexpected"),
    "unknown train key": (LENET, lambda d: d.update(train={"epochz": 3}), "'epochz' was"),
    "expression outside a block": (LENET, lambda d: d["nodes"][0].update(filters="${n}"),
                                   "is not of type"),
    "op and block": (RESNET, lambda d: d["nodes"][4].update(op="relu"), "is not valid under any"),
    "newer format": (RESNET, lambda d: d["graph"].update(format=3), "is not one of"),
    "unknown key in a block": (RESNET, lambda d: d["blocks"]["basic"].update(arg={}),
                               "'arg' was unexpected"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_specs_are_rejected(schema, case):
    base, change, message = BAD[case]
    found = errors(schema, _bad(base, change))
    assert found and any(message in text for text in found), found


def test_augmentation_in_train_is_in_the_schema(schema):
    augmented = _bad(LENET, lambda d: d.setdefault("train", {}).update(
        augment=["crop:4", {"name": "flip", "p": 0.25}, "shift"]))
    assert errors(schema, augmented) == []
    assert errors(schema, _bad(LENET, lambda d: d.setdefault("train", {}).update(
        augment=["rotate:10"])))


def test_expressions_are_accepted_inside_blocks_only(schema):
    data = read(RESNET)
    assert data["blocks"]["basic"]["nodes"][0]["filters"] == "${filters}"
    assert errors(schema, data) == []


def test_plugins_ops_are_in_the_schema(run_cli):
    status, out, err = run_cli("schema", "--plugin", PRELU)
    assert status == 0, err
    schema = json.loads(out)
    ops = schema["definitions"]["node"]["properties"]["op"]["enum"]
    assert "prelu" in ops and "conv2d" in ops
    conv = next(rule["then"] for rule in schema["definitions"]["node"]["allOf"]
                if rule["if"]["properties"]["op"]["const"] == "conv2d")
    assert conv["properties"]["groups"]["minimum"] == 1
    assert conv["properties"]["init"]["default"] == "he_normal"
    assert conv["properties"]["filters"]["type"] == "integer"
    assert conv["required"] == ["filters", "kernel"]


# --- taplo -----------------------------------------------------------------------------------------
def taplo() -> str | None:
    """The taplo binary: on PATH, or beside this Python (a venv's bin, where pip puts it)."""
    found = shutil.which("taplo")
    beside = Path(sys.executable).parent / "taplo"
    return found or (str(beside) if beside.exists() else None)


@pytest.fixture(scope="module")
def schema_file(tmp_path_factory, schema) -> Path:
    path = tmp_path_factory.mktemp("schema") / "graphnet-schema.json"
    path.write_text(json.dumps(schema))
    return path


def run_taplo(*args, cwd=None):
    binary = taplo()
    if binary is None:
        pytest.skip("taplo is not installed: pip install taplo (it is in the test extra)")
    environment = dict(os.environ, RUST_LOG="error", NO_COLOR="1")
    return subprocess.run([binary, "check", *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=cwd, env=environment)


def test_taplo_accepts_every_toml_example(schema_file):
    toml_specs = [path for path in SPECS if path.suffix == ".toml"]
    completed = run_taplo("--schema", schema_file.as_uri(), *toml_specs)
    assert completed.returncode == 0, completed.stderr[-2000:]


def test_taplo_rejects_bad_specs_through_the_schema_comment(schema_file, tmp_path):
    """The editor setup: a ``#:schema`` line naming the saved schema, relative to the spec."""
    (tmp_path / schema_file.name).write_text(schema_file.read_text())
    cases = {
        "attribute.toml": ('[[nodes]]\nname = "c"\nop = "conv2d"\nfilters = 4\nkernal = 3\n',
                           "'kernal' was unexpected"),
        "op.toml": ('[[nodes]]\nname = "c"\nop = "relo"\n', "is not one of"),
        "type.toml": ('[[nodes]]\nname = "c"\nop = "dense"\nunits = "ten"\n', "is not of type"),
    }
    for name, (nodes, message) in cases.items():
        path = tmp_path / name
        path.write_text(f"#:schema ./{schema_file.name}\n[inputs]\nimage = {{ shape = [8] }}\n"
                        + nodes)
        completed = run_taplo(path, cwd=tmp_path)
        assert completed.returncode != 0, name
        assert message in completed.stderr, (name, completed.stderr[-1000:])
    good = tmp_path / "good.toml"
    good.write_text(f"#:schema ./{schema_file.name}\n" + LENET.read_text())
    completed = run_taplo(good, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr[-2000:]
