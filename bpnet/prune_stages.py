"""``bpnet prune --keep_stages N`` (bpnet addition; TLT has none): drop a multi-stage network's last refinement
stages.

A bpnet model's outputs are every stage's heatmaps and PAFs, ``[heat_1..heat_S, paf_1..paf_S]``
(:func:`bpnet.model.build.stage_outputs`); each stage refines the previous one's maps, and its last stages cost as
much as the first refinement but change the maps less and less. Keeping the first ``N`` stages makes stage ``N``'s
heads the network's outputs: they are renamed ``heatmap_out`` and ``paf_out`` (what export, INT8 quantisation and
the block report look for), and every layer that only the dropped stages used goes. The kept layers keep their
weights exactly, so the truncated network computes stage ``N``'s maps of the original bit for bit.
"""

import copy
from typing import Dict

from bpnet.errors import BpnetError

FINAL_NAMES = ("heatmap_out", "paf_out")


def keep_first_stages(model, stages: int):
    """A copy of the functional Keras ``model`` whose outputs are its first ``stages`` (≥ 1, checked by
    :class:`bpnet.prune.PruneSettings`) stages' heatmaps and PAFs (the model itself when it has that many)."""
    import keras

    from bpnet.model.build import stage_outputs

    heatmaps, pafs = stage_outputs(model.outputs)
    if stages > len(heatmaps):
        raise BpnetError(f"keep_stages: the model has {len(heatmaps)} stages, cannot keep {stages}")
    if stages == len(heatmaps):
        return model
    truncated = keras.Model(model.inputs, heatmaps[:stages] + pafs[:stages], name=model.name)
    heads = [tensor._keras_history[0].name for tensor in (heatmaps[stages - 1], pafs[stages - 1])]
    names = dict(zip(heads, FINAL_NAMES))
    rebuilt = keras.Model.from_config(_renamed_config(truncated.get_config(), names))
    for layer in truncated.layers:
        if layer.weights:
            rebuilt.get_layer(names.get(layer.name, layer.name)).set_weights(layer.get_weights())
    return rebuilt


def _renamed_config(config: Dict, names: Dict[str, str]) -> Dict:
    """``config`` (a functional model's) with the layers in ``names`` renamed, and every reference to them."""
    config = copy.deepcopy(config)

    def visit(value):
        if isinstance(value, dict):
            history = value.get("config", {}).get("keras_history") if value.get("class_name") == "__keras_tensor__" else None
            if history is not None and history[0] in names:
                history[0] = names[history[0]]
            for item in value.values():
                visit(item)
        elif isinstance(value, list):
            if len(value) == 3 and isinstance(value[0], str) and value[0] in names:  # output_layers: [name, 0, 0]
                value[0] = names[value[0]]
            for item in value:
                visit(item)

    for entry in config["layers"]:
        if entry["name"] in names:
            entry["name"] = entry["config"]["name"] = names[entry["name"]]
        entry.pop("build_config", None)
        visit(entry.get("inbound_nodes", []))
    visit(config["output_layers"])
    return config
