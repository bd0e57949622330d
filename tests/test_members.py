"""The member axis of the networks: shapes, per-member seeded initialisation, independence of the
members, variable names, and a member's policy on its own."""

import random

import numpy as np
import pytest
import tensorflow as tf

from smoothie_tf.jets import glorot_limit
from smoothie_tf.networks import GaussianPolicy, SmoothedCritic, unbatched_policy

P, B, S, D = 3, 6, 5, 2
LOW, HIGH = np.array([-1.0, -2.0]), np.array([1.0, 0.5])


def critic(members=P, seeds=(10, 11, 12), **kwargs):
    layout = {"state_embedding": 16, "hidden": (12, 8)} | kwargs
    network = SmoothedCritic(D, members=members, initial_seeds=seeds, **layout)
    leading = [] if members is None else [members]
    network(tf.zeros([*leading, 1, S]), tf.zeros([*leading, 1, D]))
    return network


def policy(members=P, seeds=(20, 21, 22), **kwargs):
    network = GaussianPolicy(LOW, HIGH, hidden=(16, 8), members=members, initial_seeds=seeds, **kwargs)
    network(tf.zeros([1, S] if members is None else [members, 1, S]))
    return network


def inputs(seed=0, members=P):
    rng = np.random.default_rng(seed)
    leading = () if members is None else (members,)
    states = tf.constant(rng.normal(size=(*leading, B, S)), tf.float32)
    actions = tf.constant(rng.normal(size=(*leading, B, D)), tf.float32)
    return states, actions


def test_population_shapes():
    states, actions = inputs()
    q_network, pi = critic(), policy()
    assert q_network(states, actions).shape == (P, B)
    q, g, h = q_network.value_grad_hess(states, actions)
    assert (q.shape, g.shape, h.shape) == ((P, B), (P, B, D), (P, B, D, D))
    assert q_network.value_grad_hess(states, actions, diagonal=True)[2].shape == (P, B, D)
    assert pi.mean(states).shape == (P, B, D)
    assert pi.log_variance.shape == (P, D) and pi.variance().shape == (P, D)
    assert pi.sample(states, tf.zeros([P, B, D])).shape == (P, B, D)
    assert pi.distribution(states).batch_shape == (P, B)
    assert all(v.shape[0] == P for v in q_network.variables + pi.variables)


def test_population_of_one_keeps_the_member_axis():
    states, actions = inputs(members=1)
    q, g, h = critic(members=1, seeds=[3]).value_grad_hess(states, actions)
    assert (q.shape, g.shape, h.shape) == ((1, B), (1, B, D), (1, B, D, D))
    assert policy(members=1, seeds=[3]).variance().shape == (1, D)


def test_population_policy_distribution_and_samples_are_per_member():
    pi = policy(initial_log_variance=[-1.0, 0.0, 0.5])
    np.testing.assert_allclose(pi.variance(), np.exp(np.repeat([[-1.0], [0.0], [0.5]], D, axis=1)), rtol=1e-6)
    states, _ = inputs()
    noise = np.random.default_rng(4).normal(size=(P, B, D)).astype(np.float32)
    mean = pi.mean(states).numpy()
    expected = np.clip(mean + np.exp(0.5 * pi.log_variance.numpy())[:, None, :] * noise, LOW, HIGH)
    np.testing.assert_allclose(pi.sample(states, noise), expected, rtol=1e-6, atol=1e-6)
    distribution = pi.distribution(states)
    np.testing.assert_allclose(distribution.mean(), mean, rtol=1e-6)
    np.testing.assert_allclose(distribution.variance(), np.broadcast_to(pi.variance()[:, None], (P, B, D)))


@pytest.mark.parametrize(
    "states_shape, actions_shape, message",
    [
        ([B, S], [B, D], r"states must have shape \[3, batch, n\], got \[6, 5\]"),
        ([2, B, S], [2, B, D], r"states must have shape \[3, batch, n\], got \[2, 6, 5\]"),
        ([P, B, S], [P, B, 4], r"actions must have shape \[3, batch, 2\], got \[3, 6, 4\]"),
        ([P, B, S], [P, 4, D], r"states and actions must have one batch size, got 6 and 4"),
    ],
)
def test_population_critic_rejects_wrong_shapes(states_shape, actions_shape, message):
    network = SmoothedCritic(D, state_embedding=16, hidden=(8,), members=P)
    for call in (network, network.value_grad_hess):
        with pytest.raises(ValueError, match=message):
            call(tf.zeros(states_shape), tf.zeros(actions_shape))


def test_population_policy_rejects_wrong_shapes_and_arguments():
    pi = policy()
    with pytest.raises(ValueError, match=r"states must have shape \[3, batch, 5\], got \[2, 6, 5\]"):
        pi.mean(tf.zeros([2, B, S]))
    with pytest.raises(ValueError, match=r"noise must have the mean's shape \[3, 6, 2\]"):
        pi.sample(tf.zeros([P, B, S]), tf.zeros([B, D]))
    with pytest.raises(ValueError, match="one per member"):
        GaussianPolicy(LOW, HIGH, members=P, initial_log_variance=[-1.0, -2.0])
    with pytest.raises(ValueError, match=r"initial_seeds needs one seed per member \(3\), got 2"):
        GaussianPolicy(LOW, HIGH, members=P, initial_seeds=[1, 2])
    with pytest.raises(ValueError, match="initial_seeds needs one seed per member"):
        SmoothedCritic(D, initial_seeds=[1, 2])  # members=None: one member
    for members in (0, 1.5, True):
        with pytest.raises(ValueError, match="members must be None or an integer >= 1"):
            SmoothedCritic(D, members=members)


def test_member_initial_weights_depend_on_its_seed_alone():
    seeds = [101, 7, 2**62 + 5, 0, 55, 9, 31337, 4]
    for build in (critic, policy):
        population = build(members=8, seeds=seeds).named_variables()
        for k in (0, 2, 7):
            one = build(members=1, seeds=[seeds[k]]).named_variables()
            single = build(members=None, seeds=[seeds[k]]).named_variables()
            assert one.keys() == population.keys() == single.keys()
            for name in population:
                np.testing.assert_array_equal(one[name].numpy()[0], population[name].numpy()[k])
                np.testing.assert_array_equal(single[name].numpy()[0], population[name].numpy()[k])


def test_initialisation_kinds():
    q_network = critic(members=2, seeds=[1, 2], state_embedding=400, hidden=(300,))
    pi = policy(members=2, seeds=[1, 2], initial_log_variance=[-1.0, 0.25])
    for layer in (*q_network.dense_layers, *pi.hidden_layers):
        _, n_in, n_out = layer.kernel.shape
        limit = glorot_limit(n_in, n_out)
        assert limit == pytest.approx(np.sqrt(6 / (n_in + n_out)))
        kernel = layer.kernel.numpy()
        assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.9 * limit
        np.testing.assert_array_equal(layer.bias.numpy(), 0.0)
    for kernel in (q_network.embedding.kernel.numpy(), q_network.hidden_layers[0].kernel.numpy()):
        # Uniform on ±limit has variance limit²/3; 5 standard errors (var of x² is 4 limit⁴/45).
        limit, n = glorot_limit(*kernel.shape[1:]), kernel[0].size
        for member in kernel:
            assert member.var() == pytest.approx(limit**2 / 3, abs=5 * np.sqrt(4 * limit**4 / 45 / n))
        assert not np.array_equal(kernel[0], kernel[1])  # members differ
    final = pi.mean_output
    for weights in (final.kernel.numpy(), final.bias.numpy()):
        assert np.abs(weights).max() <= 3e-3 and np.abs(weights).max() > 1e-3
    assert not np.isin(final.bias.numpy()[0], final.kernel.numpy()[0]).any()  # bias is not a copy
    np.testing.assert_array_equal(pi.log_variance.numpy(), [[-1.0, -1.0], [0.25, 0.25]])


def test_initial_seeds_default_to_pythons_random():
    random.seed(5)
    first = critic(seeds=None).named_variables()
    random.seed(5)
    again = critic(seeds=None).named_variables()
    other = critic(seeds=None).named_variables()
    for name in first:
        np.testing.assert_array_equal(first[name].numpy(), again[name].numpy())
    assert not np.array_equal(first["hidden_0/kernel"].numpy(), other["hidden_0/kernel"].numpy())


def perturb_member(network, j, seed):
    rng = np.random.default_rng(seed)
    for variable in network.variables:
        values = variable.numpy()
        values[j] += rng.normal(size=values[j].shape).astype(values.dtype)
        variable.assign(values)


def test_members_are_independent():
    q_network, pi = critic(), policy()
    states, actions = inputs()
    compiled_jets = tf.function(lambda s, a: q_network.value_grad_hess(s, a, diagonal=True), jit_compile=True)
    noise = tf.constant(np.random.default_rng(2).normal(size=(P, B, D)), tf.float32)

    def outputs():
        return [
            q_network(states, actions),
            *q_network.value_grad_hess(states, actions),
            *compiled_jets(states, actions),
            pi.mean(states),
            pi.sample(states, noise),
            pi.variance(),
        ]

    before = [x.numpy() for x in outputs()]
    j = 1
    perturb_member(q_network, j, seed=3)
    perturb_member(pi, j, seed=4)
    after = [x.numpy() for x in outputs()]
    for x, y in zip(before, after, strict=True):
        for k in range(P):
            if k == j:
                assert not np.array_equal(x[k], y[k])
            else:
                np.testing.assert_array_equal(x[k], y[k])


def test_variables_have_stable_unique_names():
    q_network, pi = critic(), policy()
    assert list(q_network.named_variables()) == [
        f"{layer}/{part}"
        for layer in ("state_embedding", "hidden_0", "hidden_1", "q")
        for part in ("kernel", "bias")
    ]
    assert list(pi.named_variables()) == [
        *(
            f"{layer}/{part}"
            for layer in ("mean_hidden_0", "mean_hidden_1", "mean")
            for part in ("kernel", "bias")
        ),
        "log_variance",
    ]
    for network in (q_network, pi):
        named = network.named_variables()
        assert {id(v) for v in named.values()} == {id(v) for v in network.trainable_variables}
        assert len(named) == len(network.trainable_variables)
    assert pi.named_variables()["log_variance"] is pi.log_variance
    assert {id(v) for v in pi.mean_variables} == {
        id(v) for n, v in pi.named_variables().items() if n != "log_variance"
    }
    with pytest.raises(ValueError, match="before its first call"):
        SmoothedCritic(D).named_variables()


def test_unbatched_policy_is_a_copy_of_one_member():
    pi = policy(initial_log_variance=[-1.0, 0.0, 0.5])
    perturb_member(pi, 2, seed=8)  # weights that are not the initial ones of member 2's seed
    states, _ = inputs()
    k = 2
    single = unbatched_policy(pi, k)
    assert single.members is None and single.name == pi.name and single.log_variance.shape == (1, D)
    np.testing.assert_array_equal(single.mean(states[k]), pi.mean(states)[k])
    np.testing.assert_array_equal(single.variance(), pi.variance()[k])
    for name, variable in single.named_variables().items():
        np.testing.assert_array_equal(variable.numpy()[0], pi.named_variables()[name].numpy()[k])
    mean = single.mean(states[k]).numpy()
    perturb_member(pi, k, seed=9)
    np.testing.assert_array_equal(single.mean(states[k]), mean)  # a copy, not a view
    for bad in (-1, 3, 1.0):
        with pytest.raises(ValueError, match=r"member index must be an integer in \[0, 3\)"):
            unbatched_policy(pi, bad)
