"""The critic and the Gaussian policy: shapes, bad input, and the policy's distribution."""

import numpy as np
import pytest
import tensorflow as tf

from smoothie_tf.networks import GaussianPolicy, SmoothedCritic


def test_paper_critic_layout():
    critic = SmoothedCritic(action_dim=3)
    q = critic(tf.zeros([5, 11]), tf.zeros([5, 3]))
    assert q.shape == (5,)
    kernels = [tuple(w.shape) for w in critic.trainable_weights if len(w.shape) == 2]
    assert kernels == [(11, 400), (403, 300), (300, 1)]


def test_deeper_critic_by_keyword():
    critic = SmoothedCritic(action_dim=2, state_embedding=32, hidden=(64, 48))
    critic(tf.zeros([1, 4]), tf.zeros([1, 2]))
    kernels = [tuple(w.shape) for w in critic.trainable_weights if len(w.shape) == 2]
    assert kernels == [(4, 32), (34, 64), (64, 48), (48, 1)]


@pytest.mark.parametrize(
    "states_shape, actions_shape, message",
    [
        ([5, 11], [5, 4], r"actions must have shape \[batch, 3\], got \[5, 4\]"),
        ([5, 11], [5], r"actions must have shape \[batch, 3\], got \[5\]"),
        ([5, 11, 1], [5, 3], r"states must have shape \[batch, n\], got \[5, 11, 1\]"),
    ],
)
def test_critic_rejects_wrong_shapes(states_shape, actions_shape, message):
    critic = SmoothedCritic(action_dim=3)
    for call in (critic, critic.value_grad_hess):
        with pytest.raises(ValueError, match=message):
            call(tf.zeros(states_shape), tf.zeros(actions_shape))


def test_critic_rejects_states_of_another_size_after_build():
    critic = SmoothedCritic(action_dim=3)
    critic(tf.zeros([2, 11]), tf.zeros([2, 3]))
    with pytest.raises(ValueError, match=r"states must have shape \[batch, 11\], got \[2, 7\]"):
        critic.value_grad_hess(tf.zeros([2, 7]), tf.zeros([2, 3]))


def test_critic_rejects_bad_sizes():
    with pytest.raises(ValueError, match="action_dim"):
        SmoothedCritic(action_dim=0)
    with pytest.raises(ValueError, match="hidden layer"):
        SmoothedCritic(action_dim=2, hidden=())


def make_policy(low=(-1.0, -2.0, 0.0), high=(1.0, 3.0, 0.5)):
    return GaussianPolicy(np.array(low), np.array(high))


def test_policy_mean_starts_mid_range_and_stays_within_bounds():
    policy = make_policy()
    states = tf.constant(np.random.default_rng(0).normal(size=(64, 4)), tf.float32)
    np.testing.assert_allclose(policy.mean(states), np.tile([0.0, 0.5, 0.25], (64, 1)), atol=0.05)
    # Saturate the last layer: the mean must still lie within the bounds.
    kernel = policy.mean_output.kernel
    kernel.assign(1e3 * tf.sign(tf.random.normal(kernel.shape)))
    mean = policy.mean(100.0 * states).numpy()
    assert np.all(mean >= [-1.0, -2.0, 0.0]) and np.all(mean <= [1.0, 3.0, 0.5])
    assert np.abs(mean).max() > 0.99  # the bounds were reached, not avoided


def test_policy_variance_is_exp_of_log_variance():
    policy = GaussianPolicy([-1.0, -1.0], [1.0, 1.0], initial_log_variance=-1.0)
    np.testing.assert_allclose(policy.variance(), np.exp([-1.0, -1.0]), rtol=1e-6)
    policy.log_variance.assign([0.5, -3.0])
    np.testing.assert_allclose(policy.variance(), np.exp([0.5, -3.0]), rtol=1e-6)


def test_policy_samples_have_the_stated_mean_and_variance():
    policy = GaussianPolicy([-100.0, -100.0], [100.0, 100.0])
    policy.log_variance.assign([0.0, -2.0])
    n = 200_000
    states = tf.ones([n, 3])
    samples = policy.sample(states, generator=tf.random.Generator.from_seed(3)).numpy().astype(np.float64)
    mean = policy.mean(states).numpy()[0]
    variance = np.exp([0.0, -2.0])
    # Sample mean: standard error sqrt(v/n); sample variance: standard error v*sqrt(2/n). 5 standard errors.
    np.testing.assert_allclose(samples.mean(0), mean, atol=5 * np.sqrt(variance / n).max())
    np.testing.assert_allclose(samples.var(0), variance, atol=5 * (variance * np.sqrt(2 / n)).max())


def test_policy_samples_are_clipped_and_reproducible():
    policy = GaussianPolicy([-0.1], [0.1], initial_log_variance=2.0)
    states = tf.zeros([1000, 2])
    first = policy.sample(states, generator=tf.random.Generator.from_seed(7)).numpy()
    again = policy.sample(states, generator=tf.random.Generator.from_seed(7)).numpy()
    np.testing.assert_array_equal(first, again)
    assert first.min() == pytest.approx(-0.1) and first.max() == pytest.approx(0.1)
    unclipped = policy.sample(states, generator=tf.random.Generator.from_seed(7), clip=False).numpy()
    assert np.abs(unclipped).max() > 1.0


def test_policy_distribution_is_the_diagonal_gaussian():
    policy = make_policy()
    states = tf.zeros([2, 4])
    distribution = policy.distribution(states)
    np.testing.assert_allclose(distribution.mean(), policy.mean(states), rtol=1e-6)
    np.testing.assert_allclose(distribution.variance(), np.tile(policy.variance(), (2, 1)), rtol=1e-6)


def test_policy_rejects_bad_bounds_and_states():
    with pytest.raises(ValueError, match="low < high"):
        GaussianPolicy([1.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        GaussianPolicy([-np.inf], [1.0])
    policy = make_policy()
    policy.mean(tf.zeros([1, 4]))
    with pytest.raises(ValueError, match=r"states must have shape \[batch, 4\], got \[1, 5\]"):
        policy.mean(tf.zeros([1, 5]))
