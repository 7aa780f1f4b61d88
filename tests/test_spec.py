"""Reading and structurally validating spec files (graphnet.spec)."""
import pytest

import graphnet
from graphnet.errors import SpecError
from graphnet.spec import SpecErrors, load_spec

MINIMAL = {
    "inputs": {"x": {"shape": [4]}},
    "nodes": [{"name": "fc", "op": "dense", "units": 2}],
}


def messages(error) -> list[str]:
    return [str(e) for e in getattr(error, "errors", [error])]


def test_toml_and_json_give_the_same_spec(tmp_path):
    (tmp_path / "a.toml").write_text(
        '[inputs]\nx = { shape = [4] }\n[[nodes]]\nname = "fc"\nop = "dense"\nunits = 2\n')
    (tmp_path / "a.json").write_text(
        '{"inputs": {"x": {"shape": [4]}}, "nodes": [{"name": "fc", "op": "dense", "units": 2}]}')
    toml_spec, json_spec = load_spec(tmp_path / "a.toml"), load_spec(tmp_path / "a.json")
    assert toml_spec.nodes == json_spec.nodes and toml_spec.inputs == json_spec.inputs


def test_defaults_inputs_outputs_and_dtype():
    spec = load_spec(MINIMAL)
    assert spec.nodes[0].inputs == ["x"]            # the only input
    assert spec.outputs == {"output": "fc"}          # the last node
    assert spec.inputs["x"].dtype == "float32"
    assert spec.nodes[0].attrs == {"units": 2}


def test_node_without_inputs_takes_the_node_before_it():
    spec = load_spec({"inputs": {"x": {"shape": [4]}}, "nodes": [
        {"name": "a", "op": "relu"}, {"name": "b", "op": "relu"}]})
    assert spec.nodes[1].inputs == ["a"]


@pytest.mark.parametrize("text, suffix, where", [
    ("[inputs\nx = 1\n", ".toml", "line 1"),
    ('{"inputs": {"x": }', ".json", "line 1, column 18"),
])
def test_syntax_errors_name_line_and_column(tmp_path, text, suffix, where):
    path = tmp_path / f"bad{suffix}"
    path.write_text(text)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert str(path) in str(caught.value) and where in str(caught.value)


@pytest.mark.parametrize("text, message", [
    ('{"inputs": {"x": {"shape": [1, 8, 8]}}, "nodes": [{"name": "c", "op": "conv2d", '
     '"filters": 2, "kernel": 3, "kernel": 5}]}',
     "field 'kernel': a key given twice in the object named 'c': expected each key once "
     "(JSON readers keep only the last; TOML refuses it), found 3 and 5"),
    ('{"inputs": {"x": {"shape": [4]}}, "nodes": [], "inputs": {}}',
     "field 'inputs': a key given twice: expected each key once"),
])
def test_a_json_key_given_twice_is_refused_as_toml_refuses_it(tmp_path, run_cli, text, message):
    """JSON readers keep the last of a repeated key: the spec above built a 5×5 conv and
    `graphnet check` said ok; the same spec in TOML is a syntax error."""
    path = tmp_path / "twice.json"
    path.write_text(text)
    status, out, err = run_cli("check", path)
    assert status == 2 and "Traceback" not in err
    assert err.count("error:") == 1 and f"{path}: {message}" in err


@pytest.mark.parametrize("change, field", [
    ({"graph": {"name": "net\x1b[2J"}}, "graph.name"),
    ({"graph": {"name": "tab\there"}}, "graph.name"),
    ({"graph": {"description": "a\x1b]0;title\x07"}}, "graph.description"),
    ({"outputs": {"scores\x1b[31m": "fc"}}, "outputs.scores\x1b[31m"),
])
def test_printed_text_with_control_characters_is_refused(change, field):
    """Node and input names were refused unless printable; the graph's name and description
    and the output names, which check, inspect and train print as they are, were not: an
    escape sequence in a spec reached the reader's terminal."""
    spec = {"inputs": {"x": {"shape": [4]}}, "nodes": [{"name": "fc", "op": "dense", "units": 2}],
            **change}
    with pytest.raises(SpecError) as caught:
        load_spec(spec)
    assert caught.value.field == field and "\x1b" not in str(caught.value)


def test_a_description_may_hold_line_breaks_and_tabs():
    spec = load_spec({"graph": {"description": "two\nlines\tand a tab"},
                      "inputs": {"x": {"shape": [4]}},
                      "nodes": [{"name": "fc", "op": "dense", "units": 2}]})
    assert spec.description == "two\nlines\tand a tab"


def test_empty_file(tmp_path):
    path = tmp_path / "empty.toml"
    path.write_text("  \n")
    with pytest.raises(SpecError, match="empty"):
        load_spec(path)


def test_unknown_suffix_and_missing_file(tmp_path):
    with pytest.raises(SpecError, match=r"\.toml or \.json"):
        load_spec(tmp_path / "net.yaml")
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "missing.toml")


def test_an_onnx_model_given_as_a_spec_names_the_importer(tmp_path):
    """graphnet.load reads specs; an ONNX model's weights would be lost on the way, so the
    refusal says how it is loaded instead."""
    path = tmp_path / "net.onnx"
    path.write_bytes(b"")
    with pytest.raises(SpecError) as refused:
        graphnet.load(path)
    assert "graphnet.import_onnx(path)" in str(refused.value)
    assert refused.value.hint is not None and refused.value.file == str(path)
    with pytest.raises(SpecError) as other:
        load_spec(tmp_path / "net.yaml")
    assert other.value.hint is None


def test_duplicate_node_names_and_unknown_input_are_all_reported():
    with pytest.raises(SpecErrors) as caught:
        load_spec({"inputs": {"image": {"shape": [4]}}, "nodes": [
            {"name": "a", "op": "relu", "inputs": ["imgae"]},
            {"name": "a", "op": "relu"},
        ]})
    text = messages(caught.value)
    assert any("node 'a', field 'name': duplicate name" in m for m in text)
    assert any("field 'inputs': unknown input" in m and "did you mean 'image'?" in m for m in text)


@pytest.mark.parametrize("shape, found", [([0, 3], "[0, 3]"), ([-1], "[-1]"), ("3", "'3'"),
                                          ([2.5], "[2.5]")])
def test_bad_input_shapes(shape, found):
    with pytest.raises(SpecError) as caught:
        load_spec({"inputs": {"x": {"shape": shape}}, "nodes": [{"name": "a", "op": "relu"}]})
    assert "field 'inputs.x.shape'" in str(caught.value) and found in str(caught.value)


def test_outputs_naming_a_missing_node():
    spec = dict(MINIMAL, outputs={"logits": "fcc"})
    with pytest.raises(SpecError) as caught:
        load_spec(spec)
    assert "field 'outputs.logits'" in str(caught.value)
    assert "did you mean 'fc'?" in str(caught.value)


def test_unknown_section_suggests_the_closest():
    with pytest.raises(SpecError, match="did you mean 'nodes'"):
        load_spec(dict(MINIMAL, node=[]))


def test_bad_dtype():
    with pytest.raises(SpecError, match="inputs.x.dtype"):
        load_spec({"inputs": {"x": {"shape": [], "dtype": "int8"}},
                   "nodes": [{"name": "a", "op": "relu"}]})


def test_a_spec_built_in_python_may_use_tuples_and_numpy():
    import numpy as np

    import graphnet
    weights = np.arange(6, dtype=np.float32).reshape(3, 2) / 10
    built = {"inputs": {"x": {"shape": (np.int64(2),)}, "label": {"shape": (), "dtype": "int64"}},
             "nodes": [{"name": "fc", "op": "dense", "units": np.int32(3), "inputs": ("x",),
                        "weights": {"weight": weights, "bias": np.zeros(3)},
                        "trainable": np.bool_(False)},
                       {"name": "loss", "op": "softmax_cross_entropy", "inputs": ("fc", "label")}],
             "outputs": {"logits": "fc", "loss": "loss"}}
    graph = graphnet.load(built)
    assert graph.nodes["x"].shape == (2,) and graph.nodes["fc"].shape == (3,)
    net = graphnet.Network(graph)
    np.testing.assert_array_equal(net.params["fc"]["weight"], weights)
    assert not graph.nodes["fc"].trainable
    assert isinstance(load_spec(built).nodes[0].attrs["units"], int)
