"""A term that one member of a population weighs 0 and another > 0 (kl_penalty λ, and
derivative_bellman_k1 / _k2): the member of weight 0 updates as it would alone, where the term is
never computed, even when its own term overflows; the member of weight > 0 updates as alone too.

The overflow: a member whose policy starts with φ = φ̄ = −200 (a collapsed variance; e^−200
underflows float32 to 0). Alone with weight 0 it trains finitely (its surrogate weighs the
Hessian by e^φ = 0, its phantom actions are the replayed ones), but its own KL to the target
policy divides by e^φ̄ and its derivative Bellman targets by Σ^{1/2} (x = Σ^{-1/2}(ã − a) is 0/0):
the term is inf or NaN, and 0·inf, or a 0 upstream gradient times an inf local derivative, is
NaN. The member alone is the reference: its compiled step has no such term at all.

Also: the inputs of such a term are masked only when some member weighs it 0, and a member of
weight 0 reports its own term (its KL, its derivative Bellman losses), computed apart."""

import numpy as np
import pytest
import tensorflow as tf
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


WEIGHTED_KEYS = ("kl_penalty", "derivative_bellman_k1", "derivative_bellman_k2")


def test_the_inputs_are_masked_only_when_some_member_weighs_the_term_0():
    """`weighted_inputs`: the inputs object itself when every member weighs the term (the compiled
    step then has no masks), else a new tuple with the safe values in the slices of the members of
    weight 0 and the inputs, unchanged, in the others."""
    rng = np.random.default_rng(0)
    inputs = (
        tf.constant(rng.normal(size=(2, 4, 2)).astype(np.float32)),
        tf.constant(rng.normal(size=(2, 2)).astype(np.float32)),
    )
    safe = (0.0, 1.0)
    every, some = (
        SmoothieAgent(
            S, LOW, HIGH, seeds=SEEDS, hparams=[dict.fromkeys(WEIGHTED_KEYS, w) for w in weights], **SHAPES
        )
        for weights in ((0.3, 0.5), (0.0, 0.5))
    )
    for key in WEIGHTED_KEYS:
        assert every.weighted_inputs(key, inputs, safe) is inputs, key
        # tuple() of a tuple is the tuple itself: a list shows a copy too.
        listed = list(inputs)
        assert every.weighted_inputs(key, listed, safe) is listed, key
        masked = some.weighted_inputs(key, inputs, safe)
        assert masked is not inputs and len(masked) == len(inputs), key
        for x, m, value in zip(inputs, masked, safe, strict=True):
            assert m.shape == x.shape and m.dtype == x.dtype
            np.testing.assert_array_equal(m.numpy()[0], np.full(x.shape[1:], value, np.float32))
            np.testing.assert_array_equal(m.numpy()[1], x.numpy()[1])


def gaussian_kl(means, log_variance, target_means, target_log_variance) -> np.ndarray:
    """mean_s KL(N(μ(s), diag e^φ) ‖ N(μ̄(s), diag e^φ̄)) in float64, closed form: [P].
    means, target_means: [P, B, d]; φ, φ̄: [P, d]."""
    means, target_means = np.float64(means), np.float64(target_means)
    v, target_v = np.exp(np.float64(log_variance))[:, None], np.exp(np.float64(target_log_variance))[:, None]
    terms = v / target_v + (means - target_means) ** 2 / target_v - 1.0 + np.log(target_v) - np.log(v)
    return 0.5 * terms.sum(axis=-1).mean(axis=-1)


def test_a_member_of_weight_0_reports_its_own_terms():
    """Member 0 weighs every term 0 beside member 1's > 0, with an ordinary variance (φ = −1, and φ̄
    = −0.3: a KL to the target policy well away from 0): the terms it reports are its own, not
    those of its masked inputs (0) nor NaN. Its KL, at each step, against the closed form from the
    policy and target policy before the step (the step's KL is computed before their updates);
    its derivative Bellman losses, at the first step, against member 0 trained alone with weights
    > 0 (the same seed, batch and networks: they are computed before the critic's update)."""
    weights = {"kl_penalty": 0.5, "derivative_bellman_k1": 0.1, "derivative_bellman_k2": 0.05}
    hparams = [
        {**dict.fromkeys(weights, 0.0), "initial_log_variance": -1.0},
        {**weights, "initial_log_variance": -1.0},
    ]
    target_log_variance = np.array([[-0.3, -0.3], [-1.5, -0.8]], np.float32)
    population = SmoothieAgent(S, LOW, HIGH, seeds=SEEDS, hparams=hparams, **SHAPES)
    population.target_policy.log_variance.assign(target_log_variance)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SmoothieAgent, "jit_compile", False)
        alone = SmoothieAgent(S, LOW, HIGH, seed=SEEDS[0], **SHAPES, **hparams[1])
    alone.target_policy.log_variance.assign(target_log_variance[:1])
    batches = [member_batches(k) for k in range(2)]
    for i in range(3):
        stacked = Batch(*(np.stack(field) for field in zip(*(b[i] for b in batches), strict=True)))
        observations = tf.constant(stacked.observations)
        expected_kl = gaussian_kl(
            population.policy(observations).numpy(),
            population.policy.log_variance.numpy(),
            population.target_policy(observations).numpy(),
            population.target_policy.log_variance.numpy(),
        )
        assert expected_kl[0] > 0.1, expected_kl
        metrics = population.train_step(stacked)
        assert metrics[HEALTHY].numpy().tolist() == [True, True]
        # float32 rounding (XLA against the closed form in float64, or against the plain graph of
        # the member alone): measured at most 6e-7 relative.
        np.testing.assert_allclose(metrics["policy/kl"].numpy(), expected_kl, rtol=1e-5, err_msg=f"step {i}")
        if i == 0:
            first = alone.train_step(batches[0][0])
            for name in ("loss/derivative_bellman_k1", "loss/derivative_bellman_k2", "policy/kl"):
                own = metrics[name].numpy()[0]
                assert own > 1e-3, (name, own)
                np.testing.assert_allclose(own, first[name].numpy(), rtol=1e-5, err_msg=name)
