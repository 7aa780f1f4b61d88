"""``graphnet show SPEC``: a convolution layer's filters as heatmaps (learned ones from
``--checkpoint``, else the seeded initial ones), or with ``--input`` the activation maps of
every convolution layer for one image."""
from __future__ import annotations

from ..errors import UsageError
from ._common import load_graph

ORDER = 70
HELP = "filters and activation maps as terminal heatmaps"


def register(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "show", parents=[common], help=HELP,
        description="Draw the first convolution layer's filters (or --node's) as heatmaps: "
        "colour for filters over three input channels, a diverging blue-white-red map "
        "otherwise. With --input, draw each convolution layer's activation maps for one image.")
    parser.add_argument("spec", metavar="SPEC",
                        help="TOML or JSON graph spec, or an ONNX model (.onnx)")
    parser.add_argument("--checkpoint", metavar="PATH",
                        help="a checkpoint (.npz) or a run directory (its newest checkpoint); "
                        "without it the filters are the untrained initial ones")
    parser.add_argument("--node", metavar="NAME", help="the convolution node to draw")
    parser.add_argument("--input", metavar="FILE",
                        help="images to feed: an .npz (its 'images' array or its only array), "
                        "an .npy or a picture; draw activation maps for one of them")
    parser.add_argument("--index", type=int, default=0, help="which image of --input (default 0)")
    parser.add_argument("--channel", type=int, default=0,
                        help="input channel drawn when filters do not have exactly three "
                        "(default 0)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the initial parameters without --checkpoint (default 0)")
    parser.set_defaults(run=run)


def run(args) -> int:
    from .. import inspection
    from ..checkpoint import find_checkpoint, restore_params
    from ..engine import Network
    from ..render import print_warning
    from ..render.heatmap import render_activations, render_filters

    graph = load_graph(args, args.spec)
    for warning in graph.warnings:
        print_warning(warning)
    node_name = inspection.pick_filter_node(graph, args.node)
    network = Network(graph, seed=args.seed)
    meta, path = {}, None
    if args.checkpoint:
        path = find_checkpoint(args.checkpoint)
        meta = restore_params(path, network).meta
        epoch = meta.get("epoch")
        # the epoch first: a long path may wrap, and "epoch 3" should not be split by it
        source = "learned weights" + (f" (epoch {epoch})" if epoch is not None else "") + f" from {path}"
        untrained = False
    elif graph.nodes[node_name].fixed_weights.keys() >= graph.nodes[node_name].param_specs.keys():
        node = graph.nodes[node_name]
        source = f"weights written in the spec (node {node_name!r}, its fixed `weights`" + \
            ("; not trainable)" if not node.trainable else ")")
        untrained = False
    else:
        source = (f"initialised weights (random, seed {args.seed}): no --checkpoint given, so "
                  "these are untrained")
        untrained = True
    if args.input:
        input_name, image = inspection.load_image(args.input, graph, args.index)
        fed, was_standardised = inspection.standardised(image, meta, path)
        if was_standardised:
            source += "; the image is standardised with the training data's statistics"
        nodes = [node_name] if args.node else inspection.filter_nodes(graph)
        maps = inspection.activation_maps(network, input_name, fed, nodes)
        render_activations({
            "input": input_name, "image": image[0], "file": args.input, "index": args.index,
            "source": source, "untrained": untrained,
            "maps": [{"node": name, "op": graph.nodes[name].op_name, "values": maps[name]}
                     for name in nodes]})
        return 0
    weights = inspection.filter_weights(network, node_name)
    channels = weights.shape[1]
    if not 0 <= args.channel < channels:
        raise UsageError("bad argument", field="--channel", expected=f"0..{channels - 1}",
                         found=str(args.channel))
    render_filters({"node": node_name, "op": graph.nodes[node_name].op_name, "source": source,
                    "untrained": untrained, "weights": weights,
                    "channel": None if channels == 3 else args.channel})
    return 0
