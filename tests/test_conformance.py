"""Each registered op passes the conformance checks: shape inference equals forward, gradients
equal finite differences in float64, and the receptive field is sane (graphnet.testing)."""
import pytest

from graphnet.testing import check_onnx_export, check_op

CASES = {
    "conv2d": [((3, 7, 6), {"filters": 4, "kernel": 3, "stride": 2, "padding": "same"}),
               ((4, 6, 6), {"filters": 4, "kernel": [3, 2], "dilation": 2, "groups": 2,
                            "bias": False}),
               # kernel-tap products, which take a fused epilogue
               ((8, 12, 12), {"filters": 8, "kernel": 3, "padding": 1}),
               # four sides, ONNX's [top, left, bottom, right]
               ((3, 7, 6), {"filters": 2, "kernel": 3, "stride": 2, "padding": [2, 0, 1, 1]})],
    "max_pool2d": [((2, 6, 6), {"kernel": 2}), ((2, 7, 5), {"kernel": 3, "stride": 2,
                                                             "padding": 1}),
                   ((2, 7, 8), {"kernel": 3, "stride": 2, "padding": [1, 0, 0, 1],
                                "dilation": [1, 2], "ceil_mode": True}),
                   # wider than half the kernel, as ONNX allows
                   ((2, 5, 6), {"kernel": 3, "padding": [2, 0, 0, 2]})],
    "avg_pool2d": [((2, 6, 6), {"kernel": 2}), ((2, 7, 5), {"kernel": 3, "stride": 2,
                                                             "padding": 1}),
                   # TensorFlow's "same": border windows divide by the real pixels only
                   ((2, 7, 6), {"kernel": 3, "stride": 2, "padding": "same"}),
                   ((2, 5, 6), {"kernel": 3, "padding": 1, "count_include_pad": False}),
                   # the last windows reach past the padding: they divide by what they cover
                   ((2, 6, 7), {"kernel": 3, "stride": 2, "padding": [1, 1, 0, 1],
                                "ceil_mode": True, "count_include_pad": True}),
                   ((2, 7, 6), {"kernel": 2, "stride": 2, "dilation": 2, "ceil_mode": True})],
    "global_avg_pool": [((3, 4, 5), {})],
    "relu": [((3, 4, 4), {})],
    "leaky_relu": [((3, 4, 4), {"slope": 0.2})],
    "clip": [((3, 4, 4), {"min": -0.5, "max": 0.5}), ((5,), {"max": 0.2})],
    "relu6": [((3, 4, 4), {})],
    "sigmoid": [((5,), {})],
    "tanh": [((3, 4, 4), {})],
    "softmax": [((6,), {}), ((3, 2, 2), {}), ((6,), {"axis": -1}),
                # a spatial axis: every unit sees its whole row (or column)
                ((2, 3, 4), {"axis": -1}), ((2, 3, 4), {"axis": 1})],
    "flatten": [((3, 4, 4), {})],
    "dense": [((5,), {"units": 3}), ((2, 3, 3), {"units": 4, "bias": False})],
    "dropout": [((3, 4, 4), {"rate": 0.3})],
    "batch_norm": [((3, 4, 4), {}), ((5,), {"momentum": 0.5})],
    "add": [([(3, 4, 4), (3, 4, 4), (3, 4, 4)], {})],
    "concat": [([(1, 4, 4), (3, 4, 4)], {})],
    "mse_loss": [([(4,), (4,)], {})],
    "softmax_cross_entropy": [([(5,), ()], {})],
}


def cases():
    for op, variants in CASES.items():
        for number, (shapes, attrs) in enumerate(variants):
            shapes = shapes if isinstance(shapes, list) else [shapes]
            yield pytest.param(op, shapes, attrs, id=f"{op}-{number}")


@pytest.mark.parametrize("op, shapes, attrs", list(cases()))
def test_op_conforms(op, shapes, attrs):
    check_op(op, shapes, attrs, batch_size=3)


def exported_cases():
    """The cases of every op but the losses, which are never exported."""
    from graphnet.registry import build_registry
    registry = build_registry(environment=False)
    return [case for case in cases() if not registry.op(case.values[0]).is_loss]


@pytest.mark.parametrize("op, shapes, attrs", exported_cases())
def test_op_exports_to_onnx(op, shapes, attrs):
    """Every case but the losses' (never exported) runs in onnxruntime as graphnet runs it."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the test extra)")
    check_onnx_export(op, shapes, attrs)


def test_every_registered_op_has_a_case():
    from graphnet.registry import build_registry
    assert set(build_registry(environment=False).names("op")) == set(CASES)


def test_a_users_op_conforms_through_the_same_helper():
    from pathlib import Path
    prelu = Path(__file__).resolve().parent.parent / "plugins" / "examples" / "prelu.py"
    check_op("prelu", [(3, 4, 4)], {"initial_slope": 0.1}, plugins=[prelu])


def test_check_op_still_fails_under_python_dash_o(tmp_path):
    # Plugin authors call check_op from their own tests; under -O a bare assert would pass all.
    import subprocess
    import sys
    plugin = tmp_path / "wrong_double.py"
    plugin.write_text(
        "from graphnet.hookspecs import hookimpl\n"
        "from graphnet.op import Op\n\n"
        "class WrongDouble(Op):\n"
        "    '''Doubles its input; its backward is wrong on purpose.'''\n"
        "    name = 'wrong_double'\n"
        "    def shape(self, input_shapes, attrs):\n"
        "        return input_shapes[0]\n"
        "    def forward(self, inputs, params, attrs, ctx):\n"
        "        return inputs[0] * 2, None\n"
        "    def backward(self, grad_output, saved, params, attrs, ctx):\n"
        "        return [grad_output * 3], {}\n\n"
        "@hookimpl\n"
        "def graphnet_register_ops(registry):\n"
        "    registry.add_op(WrongDouble)\n")
    script = ("from graphnet.testing import check_op\n"
              f"check_op('wrong_double', [(3,)], plugins=[{str(plugin)!r}])\n")
    done = subprocess.run([sys.executable, "-O", "-c", script], capture_output=True, text=True)
    assert done.returncode != 0
    assert "AssertionError" in done.stderr and "wrong_double" in done.stderr


EPILOGUE_PLUGIN = '''
import numpy as np
from graphnet.fusion import Epilogue
from graphnet.hookspecs import hookimpl
from graphnet.op import Op

class Halve(Op):
    """Halves its input."""
    name = "halve"
    def shape(self, input_shapes, attrs):
        return input_shapes[0]
    def forward(self, inputs, params, attrs, ctx):
        return inputs[0] / 2, None
    def backward(self, grad_output, saved, params, attrs, ctx):
        return [grad_output / 2], {}
    def epilogue(self, attrs):
        def forward(values):
            values /= 2
        def backward(grad, output, out):
            np.multiply(grad, FACTOR, out=out)
        return Epilogue(forward, backward)

class Scale(Op):
    """Doubles its input; says it takes epilogues."""
    name = "scale"
    def shape(self, input_shapes, attrs):
        return input_shapes[0]
    def forward(self, inputs, params, attrs, ctx):
        return self.forward_with_epilogue(inputs, params, attrs, ctx, None)
    def backward(self, grad_output, saved, params, attrs, ctx):
        return self.backward_with_epilogue(grad_output, saved, params, attrs, ctx, None)
    def accepts_epilogue(self, input_shapes, attrs):
        return True
    def forward_with_epilogue(self, inputs, params, attrs, ctx, epilogue):
        output = inputs[0] * 2
        if APPLIES and epilogue:
            epilogue.forward(output)
        return output, output
    def backward_with_epilogue(self, grad_output, saved, params, attrs, ctx, epilogue):
        if APPLIES and epilogue:
            grad_output = epilogue.gradient(grad_output, saved)
        return [grad_output * 2], {}

if not COMPLETE:
    del Scale.backward_with_epilogue

@hookimpl
def graphnet_register_ops(registry):
    registry.add_op(Halve)
    registry.add_op(Scale)
'''


@pytest.mark.parametrize("factor, applies, complete, op, message", [
    (0.5, True, True, "halve", None), (0.5, True, True, "scale", None),
    (0.25, True, True, "halve", "epilogue's backward differs"),
    (0.5, False, True, "scale", "output with a fused epilogue differs"),
    (0.5, True, False, "scale", "implements accepts_epilogue, forward_with_epilogue but not "
                                "backward_with_epilogue"),
])
def test_check_op_checks_epilogues_offered_and_accepted(tmp_path, factor, applies, complete, op,
                                                        message):
    plugin = tmp_path / "epilogues.py"
    plugin.write_text(f"FACTOR = {factor}\nAPPLIES = {applies}\nCOMPLETE = {complete}\n"
                      + EPILOGUE_PLUGIN)
    if message is None:
        check_op(op, [(3, 4)], plugins=[plugin])
    else:
        with pytest.raises(AssertionError, match=message):
            check_op(op, [(3, 4)], plugins=[plugin])


LYING_CONV_PLUGIN = '''
import numpy as np
from graphnet.hookspecs import hookimpl
from graphnet.op import Attr, Op, Window

class BoxBlur(Op):
    """A 3×3 box blur that declares {declared} and {macs} MACs."""
    name = "box_blur"
    def shape(self, input_shapes, attrs):
        c, h, w = input_shapes[0]
        return (c, h - 2, w - 2)
    def receptive_field(self, input_shapes, attrs):
        return Window(kernel=({declared}, {declared}))
    def macs(self, input_shapes, output_shape, attrs):
        return {macs}
    def forward(self, inputs, params, attrs, ctx):
        x = inputs[0]
        h, w = x.shape[2] - 2, x.shape[3] - 2
        out = sum(x[:, :, i:i + h, j:j + w] for i in range(3) for j in range(3)) / 9
        return out.astype(x.dtype), x.shape
    def backward(self, grad_output, shape, params, attrs, ctx):
        grad = np.zeros(shape, grad_output.dtype)
        h, w = shape[2] - 2, shape[3] - 2
        for i in range(3):
            for j in range(3):
                grad[:, :, i:i + h, j:j + w] += grad_output / 9
        return [grad], {{}}

@hookimpl
def graphnet_register_ops(registry):
    registry.add_op(BoxBlur)
'''


@pytest.mark.parametrize("declared, macs, complaint", [
    (1, 9, "its receptive field says output unit (2, 2) sees input 'x0' at rows 2–2, columns "
           "2–2, but changing the input changes it at rows 2–4, columns 2–4"),
    (5, 9, "rows 2–6"),
    (3, -1, "macs() gave -1 multiply-accumulates per sample"),
])
def test_check_op_measures_the_receptive_field_and_refuses_negative_costs(
        tmp_path, declared, macs, complaint):
    plugin = tmp_path / "box_blur.py"
    plugin.write_text(LYING_CONV_PLUGIN.format(declared=declared, macs=macs))
    with pytest.raises(AssertionError) as caught:
        check_op("box_blur", [(2, 7, 7)], plugins=[plugin])
    assert complaint in str(caught.value)


def test_check_op_says_what_it_verified(tmp_path, capsys):
    plugin = tmp_path / "box_blur.py"
    plugin.write_text(LYING_CONV_PLUGIN.format(declared=3, macs=9))
    check_op("box_blur", [(2, 7, 7)], plugins=[plugin])
    line = capsys.readouterr().out.strip()
    assert line.startswith("check_op box_blur: output 2×5×5, ")
    assert "receptive field 3×3 stride 1×1 (measured), 9 MACs per sample — ok" in line
