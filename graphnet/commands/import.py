"""``graphnet import MODEL.onnx [-o NET.toml]``: an ONNX model as a spec and a checkpoint."""
from __future__ import annotations

from pathlib import Path

from ..errors import UsageError

ORDER = 84
HELP = "turn an ONNX model into a spec and a checkpoint"
SPEC_SUFFIXES = (".toml", ".json")


def register(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "import", parents=[common], help=HELP,
        description="Read an ONNX model (onnx's loader and checker; external data from the "
        "model's folder) and write a spec (TOML, or JSON for a .json name) whose nodes are "
        "named after the ONNX nodes, and beside it the weights as a checkpoint (NET.npz) that "
        "--checkpoint and train --init-from take. Graph inputs and outputs keep their names. "
        "An op graphnet cannot express exactly is refused (exit 2), naming the ONNX node. "
        "Every command that takes a SPEC also takes the .onnx file itself.")
    parser.add_argument("model", metavar="MODEL", help="the .onnx file")
    parser.add_argument("-o", "--output", metavar="NET.toml",
                        help="the spec to write (default: MODEL's name with .toml, in the "
                        "current folder); the checkpoint goes beside it as NET.npz")
    parser.add_argument("--add-loss", action="store_true",
                        help="add an integer 'label' input and a softmax cross-entropy 'loss' "
                        "on the class scores, so that graphnet train can fine-tune the network")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ..checkpoint import Checkpoint, save_checkpoint, spec_hash
    from ..files import atomic_write_text
    from ..onnx_import import SUFFIX, build, import_spec
    from ..onnx_import.spec_text import spec_to_toml, spec_to_json
    from ..render import print_note, stdout
    from ._common import output_path, registry_from_args

    model = Path(args.model)
    if model.suffix.lower() != SUFFIX:
        raise UsageError("cannot import this file", file=model, field="MODEL",
                         expected="an ONNX model ending in .onnx",
                         found=repr(model.suffix or "no suffix"))
    output = Path(args.output) if args.output else Path(model.with_suffix(".toml").name)
    if output.suffix.lower() not in SPEC_SUFFIXES:
        raise UsageError("cannot write the spec", file=output, field="-o",
                         expected="a name ending in .toml or .json",
                         found=repr(output.suffix or "no suffix"))
    checkpoint = output.with_suffix(".npz")
    for written in (output, checkpoint):  # the weights beside the spec are written too
        output_path(args, written, reads=[("model", model)])
    registry = registry_from_args(args)
    imported = import_spec(model, registry=registry, add_loss=args.add_loss)
    graph = build(imported, output, registry)  # the spec as written must load: checked first
    meta = {"graph": graph.name, "spec_hash": spec_hash(graph), "imported_from": model.name,
            # the model's inputs are used as given: its own preprocessing is the user's
            "standardise": {"mean": [0.0], "std": [1.0]}}
    save_checkpoint(checkpoint, Checkpoint(params=imported.params, meta=meta))
    header = (f"Imported by graphnet import from {model.name}; the weights are in "
              f"{checkpoint.name}.")
    text = (spec_to_json(imported.spec) if output.suffix.lower() == ".json"
            else spec_to_toml(imported.spec, header))
    atomic_write_text(output, text)
    for note in imported.notes:
        print_note(note)
    stdout().print(f"wrote {output} ({graph.summary()}) and {checkpoint}", soft_wrap=True,
                   markup=False)
    return 0
