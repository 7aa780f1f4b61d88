"""``graphnet predict SPEC INPUT...``: each image's class probabilities, most likely first."""
from __future__ import annotations

from ..errors import UsageError
from ._common import load_graph
from ._training import add_checkpoint_flag, checkpoint_path

ORDER = 50
HELP = "class probabilities of images"


def register(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "predict", parents=[common], help=HELP,
        description="Print each image's class probabilities, most likely first, one line per "
        "image (\".80 cat, .15 dog, .05 bird\"). INPUT is an .npz of images (key 'images' or "
        "its single array), an .npy, or an image file (needs Pillow). No labels are needed.")
    parser.add_argument("spec", metavar="SPEC",
                        help="TOML or JSON graph spec, or an ONNX model (.onnx)")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="images to classify")
    add_checkpoint_flag(parser)
    parser.add_argument("--top", default=None, metavar="K",
                        help="show only the K most likely classes")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ..inference import describe_probabilities, load_trained, read_images
    from ..render import print_note, print_warning
    from ..render.training import render_predictions

    top = None
    if args.top is not None:
        try:
            top = int(args.top)
        except ValueError:
            top = 0
        if top < 1:
            raise UsageError("bad argument", field="--top", expected="an integer >= 1",
                             found=repr(args.top))
    graph = load_graph(args, args.spec)
    trained = load_trained(graph, checkpoint_path(args, graph))
    for warning in trained.warnings:
        print_warning(warning)
    shape = graph.nodes[trained.bindings.image].shape
    conversions: dict[str, list[str]] = {}
    batches = [(path, read_images(path, shape, conversions)) for path in args.inputs]
    for kind, files in conversions.items():
        print_note(f"{kind}: {', '.join(files)}")
    several = len(batches) > 1 or any(len(images) > 1 for _, images in batches)
    lines = []
    for path, images in batches:
        for index, row in enumerate(trained.predict(images)):
            label = (f"{path}[{index}]" if len(images) > 1 else str(path)) if several else None
            lines.append((label, describe_probabilities(row, trained.class_names, top)))
    render_predictions(lines)
    return 0
