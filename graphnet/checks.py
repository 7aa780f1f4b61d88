"""What ``graphnet check`` finds in a whole spec file beyond a graph that builds: a ``[train]``
section that training would refuse, a loss without the ``[outputs]`` that name it, and an image
input whose shape looks channels-last. Each is found from the file and the registry alone; no
data is read."""
from __future__ import annotations

from .errors import GraphnetError, SpecError

CHANNELS_LAST = (1, 3, 4)
"""Channel counts of grey, RGB and RGBA images: a last axis of these after a larger first one
looks like height × width × channels."""


def spec_problems(graph) -> list[GraphnetError]:
    """Errors in the file that only ``train`` would otherwise find, each located."""
    problems: list[GraphnetError] = []
    if graph.spec.train:
        # Only for a spec with [train]: reading it as training does costs the training imports.
        from .inference import bind
        from .train_config import DatasetRequest, TrainConfig

        try:
            config = TrainConfig.from_graph(graph)
            graph.registry.entry("dataset", config.dataset, field_name="train.dataset")
            bindings = bind(graph, config.image_input, config.label_input, config.logits_output)
            DatasetRequest.of(graph, config, bindings).parse()  # as training reads them
        except GraphnetError as error:
            problems.append(error.with_context(file=graph.file))
    if "outputs" not in graph.spec.raw:
        losses = [node.name for node in graph.op_nodes if node.is_loss]
        if losses:
            problems.append(SpecError(
                "the graph has a loss but no [outputs] naming it", file=graph.file,
                field="outputs", node=losses[0],
                expected=f'an [outputs] section such as loss = "{losses[0]}" (and the logits)',
                found="no [outputs]: the last node would be the only output, 'output'"))
    return problems


def spec_hints(graph) -> list[str]:
    """Likely mistakes that are not errors: an image input that looks channels-last."""
    hints = []
    for name in graph.inputs[:1]:
        shape = graph.nodes[name].shape
        if len(shape) == 3 and shape[-1] in CHANNELS_LAST and shape[0] > max(CHANNELS_LAST):
            fixed = [shape[2], shape[0], shape[1]]
            hints.append(f"{graph.file or graph.name}: input {name!r} has shape {list(shape)}, "
                         f"which looks channels-last: shapes are channels × height × width "
                         f"(did you mean {fixed}?)")
    return hints
