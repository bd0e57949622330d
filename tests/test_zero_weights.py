"""A term that one member of a population weighs 0 and another > 0 (kl_penalty λ, and
derivative_bellman_k1 / _k2): the member of weight 0 updates as it would alone, where the term is
never computed, even when its own term overflows; the member of weight > 0 updates as alone too.

The overflow: a member whose policy starts with φ = φ̄ = −200 (a collapsed variance; e^−200
underflows float32 to 0). Alone with weight 0 it trains finitely (its surrogate weighs the
Hessian by e^φ = 0, its phantom actions are the replayed ones), but its own KL to the target
policy divides by e^φ̄ and its derivative Bellman targets by Σ^{1/2} (x = Σ^{-1/2}(ã − a) is 0/0):
the term is inf or NaN, and 0·inf, or a 0 upstream gradient times an inf local derivative, is
NaN. The member alone is the reference: its compiled step has no such term at all."""

import numpy as np
import pytest
from test_population import HIGH, LOW, SHAPES, STATE_TOLERANCE, S, assert_same_state, member_batches

from smoothie_tf.agents import SmoothieAgent
from smoothie_tf.agents.base import HEALTHY
from smoothie_tf.replay import Batch

COLLAPSED = -200.0  # member 0's initial φ (and so φ̄: the targets start as copies)
SEEDS = [3, 8]
STEPS = 4

# (the weighted hparam, the weight of member 1, derivative_bellman_diagonal, its metric)
TERMS = [
    ("kl_penalty", 0.5, False, "policy/kl"),
    ("derivative_bellman_k1", 0.1, False, "loss/derivative_bellman_k1"),
    ("derivative_bellman_k2", 0.05, False, "loss/derivative_bellman_k2"),  # the full Hessian
    ("derivative_bellman_k2", 0.05, True, "loss/derivative_bellman_k2"),  # its diagonal
]


@pytest.mark.parametrize("key, weight, diagonal, metric", TERMS, ids=["kl", "k1", "k2_full", "k2_diagonal"])
def test_a_zero_weight_beside_a_positive_one_leaves_each_member_as_alone(
    key, weight, diagonal, metric, monkeypatch
):
    """A population of 2 (member 0: weight 0 and φ = −200; member 1: weight > 0, φ = −1), XLA-compiled
    as shipped, against each member trained alone (a population of one, same seed, hparams and
    batches; a plain TensorFlow graph, as in test_population.py): every step healthy, member 0's
    own term not finite (the overflow is real), member 1's term as alone, and at the end every
    state variable of each member as alone."""
    hparams = [
        {key: 0.0, "initial_log_variance": COLLAPSED},
        {key: weight, "initial_log_variance": -1.0},
    ]
    common = {**SHAPES, "derivative_bellman_diagonal": diagonal}
    population = SmoothieAgent(S, LOW, HIGH, seeds=SEEDS, hparams=hparams, **common)
    with monkeypatch.context() as patch:
        patch.setattr(SmoothieAgent, "jit_compile", False)
        singles = [
            SmoothieAgent(S, LOW, HIGH, seed=seed, **common, **hp)
            for seed, hp in zip(SEEDS, hparams, strict=True)
        ]
    kl = key == "kl_penalty"
    assert (population.computes_kl, population.fits_action_derivatives) == (kl, not kl)
    assert (singles[0].computes_kl, singles[0].fits_action_derivatives) == (False, False)
    batches = [member_batches(k) for k in range(2)]
    for i in range(STEPS):
        stacked = Batch(*(np.stack(field) for field in zip(*(b[i] for b in batches), strict=True)))
        metrics = population.train_step(stacked)
        assert metrics[HEALTHY].numpy().tolist() == [True, True], (i, metrics["loss/policy"].numpy())
        own = metrics[metric].numpy()
        assert not np.isfinite(own[0]), own  # member 0's own term overflows
        for k, single in enumerate(singles):
            alone = single.train_step(batches[k][i])
            assert bool(alone[HEALTHY])
            for name in ("loss/critic", "loss/policy"):
                np.testing.assert_allclose(
                    metrics[name].numpy()[k],
                    alone[name].numpy(),
                    rtol=STATE_TOLERANCE,
                    atol=1e-6,
                    err_msg=name,
                )
        np.testing.assert_allclose(own[1], alone[metric].numpy(), rtol=STATE_TOLERANCE, atol=1e-6)
    for k, single in enumerate(singles):
        assert_same_state(population.member_state(k), single.member_state(0), f"member {k}")
    # Not one bit of the term's gradient reached member 0's φ (its surrogate's gradient is 0 too).
    np.testing.assert_array_equal(population.member_state(0)["policy/log_variance"], COLLAPSED)
