"""The loss of one training step, summed in one place: every vertical's CRF loss (weight 1 each) and, in coupled
mode, the coupling loss TCE (weight --coupling_weight), the paper's objective. Every term is also returned by
name for TensorBoard (crf/<vertical>, coupling/tce and TCE's parts per coupled pair)."""
import tensorflow as tf

from mtl_tagger.coupling import Coupler
from mtl_tagger.model import TaggerNet, fold_in

COUPLING_PARTS = ("cce", "cce_prime", "lce", "lce_prime")


def step_loss(net: TaggerNet, names: list[str], coupler: Coupler | None, pairs: list[tuple[str, str]],
              coupling_weight: float, inputs: dict, seed: tf.Tensor) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """The step's loss and its named terms. `inputs`: a step of `pipeline.step_dataset` (a minibatch per
    vertical of `names`, `count` per vertical for the divisor, and the coupling minibatch in coupled mode);
    dropout is drawn from `seed` folded with the vertical's place in `names` (the coupling minibatch's: after
    them)."""
    weights = {t: 1.0 for t in names}
    terms = {f"crf/{t}": net.crf_loss(t, inputs[t], fold_in(seed, i), inputs["count"][t])
             for i, t in enumerate(names)}
    loss = tf.add_n([weights[t] * terms[f"crf/{t}"] for t in names])
    if coupler is not None:
        weights["coupling"] = coupling_weight
        out = coupler(net, inputs["coupling"], fold_in(seed, len(names)), inputs["count"]["coupling"])
        loss += weights["coupling"] * out["total"]
        terms["coupling/tce"] = out["total"]
        for i, (a, b) in enumerate(pairs):
            for j, part in enumerate(COUPLING_PARTS):
                terms[f"coupling/{a}:{b}/{part}"] = out["parts"][i, j]
    return loss, terms
