"""Each registered op passes the conformance checks: shape inference equals forward, gradients
equal finite differences in float64, and the receptive field is sane (graphnet.testing)."""
import pytest

from graphnet.testing import check_op

CASES = {
    "conv2d": [((3, 7, 6), {"filters": 4, "kernel": 3, "stride": 2, "padding": "same"}),
               ((4, 6, 6), {"filters": 4, "kernel": [3, 2], "dilation": 2, "groups": 2,
                            "bias": False}),
               # kernel-tap products, which take a fused epilogue
               ((8, 12, 12), {"filters": 8, "kernel": 3, "padding": 1})],
    "max_pool2d": [((2, 6, 6), {"kernel": 2}), ((2, 7, 5), {"kernel": 3, "stride": 2,
                                                             "padding": 1})],
    "avg_pool2d": [((2, 6, 6), {"kernel": 2}), ((2, 7, 5), {"kernel": 3, "stride": 2,
                                                             "padding": 1})],
    "global_avg_pool": [((3, 4, 5), {})],
    "relu": [((3, 4, 4), {})],
    "leaky_relu": [((3, 4, 4), {"slope": 0.2})],
    "sigmoid": [((5,), {})],
    "tanh": [((3, 4, 4), {})],
    "softmax": [((6,), {}), ((3, 2, 2), {})],
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
