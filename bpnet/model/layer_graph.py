"""A Keras functional model's layers as a graph (the layer configs' inbound nodes): what each layer reads,
which layers read it, its output channels, and the convolution that decides a tensor's channels. Used by
``bpnet prune``, by skeleton remapping and by the backbone's block numbering."""

from typing import Dict, List, Optional

from bpnet.errors import BpnetError

CHANNELWISE_WEIGHTED = ("BatchNormalization", "DepthwiseConv2D")  # DepthwiseConv2D: depth_multiplier 1
PASS_THROUGH = (
    "Activation",
    "ReLU",
    "Dropout",
    "SpatialDropout2D",
    "MaxPooling2D",
    "AveragePooling2D",
    "UpSampling2D",
    "ZeroPadding2D",
    "Cropping2D",
    "LeakyReLU",
    "PReLU",
    "ELU",
)
ELEMENT_WISE = ("Multiply", "Add", "Subtract", "Maximum", "Minimum", "Average")


def inbound_layer_names(layer_config: Dict) -> List[str]:
    """Names of the layers feeding a functional-model layer config, in argument order."""
    names: List[str] = []

    def visit(value):
        if isinstance(value, dict):
            history = value.get("config", {}).get("keras_history") if value.get("class_name") == "__keras_tensor__" else None
            if history is not None:
                names.append(history[0])
                return
            for item in value.values():
                visit(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)

    nodes = layer_config.get("inbound_nodes", [])
    if len(nodes) > 1:
        raise BpnetError(f"layer {layer_config['name']}: shared layers (called more than once) cannot be pruned")
    for node in nodes:
        visit(node.get("args", []))
    return names


class LayerGraph:
    """The functional model's layers in order, with their inputs and output channel counts."""

    def __init__(self, model):
        config = model.get_config()
        self.config = config
        self.layers = {layer.name: layer for layer in model.layers}
        self.order = [entry["name"] for entry in config["layers"]]
        self.class_name = {entry["name"]: entry["class_name"] for entry in config["layers"]}
        self.inputs = {entry["name"]: inbound_layer_names(entry) for entry in config["layers"]}
        self.outputs = {entry[0] for entry in as_list(config["output_layers"])}
        self.channels = {name: int(self.layers[name].output.shape[-1]) for name in self.order}
        self.convs = [name for name in self.order if self.class_name[name] == "Conv2D"]
        self.consumers: Dict[str, List[str]] = {name: [] for name in self.order}
        for name in self.order:
            for source in self.inputs[name]:
                self.consumers[source].append(name)
        for name in self.order:
            kind, layer = self.class_name[name], self.layers[name]
            if kind in ("Functional", "Model", "Sequential"):
                raise BpnetError(f"layer {name}: nested models cannot be pruned; prune the inner model")
            if kind == "Conv2D" and getattr(layer, "groups", 1) != 1:
                raise BpnetError(f"layer {name}: grouped convolutions (groups {layer.groups}) are not supported by prune")
            if kind == "DepthwiseConv2D" and layer.depth_multiplier != 1:
                raise BpnetError(
                    f"layer {name}: depthwise convolutions with depth_multiplier {layer.depth_multiplier} are not "
                    "supported by prune (1 is)"
                )

    def source_conv(self, name: str) -> Optional[str]:
        """The convolution whose filters decide ``name``'s channels, through channel-wise layers; None if none."""
        while True:
            kind = self.class_name[name]
            if kind == "Conv2D":
                return name
            if kind in CHANNELWISE_WEIGHTED or kind in PASS_THROUGH:
                name = self.inputs[name][0]
                continue
            return None

    def activation(self, name: str) -> str:
        """The tensor a convolution hands on: its output after the batch norms and activations that alone read it."""
        while len(self.consumers[name]) == 1:
            consumer = self.consumers[name][0]
            if self.class_name[consumer] not in PASS_THROUGH and self.class_name[consumer] != "BatchNormalization":
                break
            name = consumer
        return name

    def element_sources(self, name: str) -> List[Optional[str]]:
        """The convolutions deciding the channels of an element-wise layer's inputs, through channel-wise layers
        and other element-wise layers (a chain of residual additions); None for an input no convolution makes."""
        sources: List[Optional[str]] = []
        for source in self.inputs[name]:
            while self.class_name[source] in CHANNELWISE_WEIGHTED or self.class_name[source] in PASS_THROUGH:
                source = self.inputs[source][0]
            if self.class_name[source] in ELEMENT_WISE:
                sources.extend(self.element_sources(source))
            else:
                sources.append(source if self.class_name[source] == "Conv2D" else None)
        return sources


def as_list(entries) -> List:
    """``output_layers`` is one ``[name, node, index]`` or a list of them."""
    if entries and isinstance(entries[0], str):
        return [entries]
    return list(entries)
