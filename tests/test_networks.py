"""The critic and the Gaussian policy: shapes, bad input, and the policy's distribution."""

import numpy as np
import pytest
import tensorflow as tf

from smoothie_tf.networks import GaussianPolicy, SmoothedCritic


def test_paper_critic_layout():
    critic = SmoothedCritic(action_dim=3)
    q = critic(tf.zeros([5, 11]), tf.zeros([5, 3]))
    assert q.shape == (5,)
    kernels = [tuple(w.shape) for w in critic.trainable_weights if len(w.shape) == 3]
    assert kernels == [(1, 11, 400), (1, 403, 300), (1, 300, 1)]  # a population of one inside


def test_deeper_critic_by_keyword():
    critic = SmoothedCritic(action_dim=2, state_embedding=32, hidden=(64, 48))
    critic(tf.zeros([1, 4]), tf.zeros([1, 2]))
    kernels = [tuple(w.shape) for w in critic.trainable_weights if len(w.shape) == 3]
    assert kernels == [(1, 4, 32), (1, 34, 64), (1, 64, 48), (1, 48, 1)]


@pytest.mark.parametrize(
    "states_shape, actions_shape, message",
    [
        ([5, 11], [5, 4], r"actions must have shape \[batch, 3\], got \[5, 4\]"),
        ([5, 11], [5], r"actions must have shape \[batch, 3\], got \[5\]"),
        ([5, 11, 1], [5, 3], r"states must have shape \[batch, n\], got \[5, 11, 1\]"),
        ([5, 11], [4, 3], r"states and actions must have one batch size, got 5 and 4"),
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
    assert policy.log_variance.shape == (1, 2)  # a population of one inside
    np.testing.assert_allclose(policy.variance(), np.exp([-1.0, -1.0]), rtol=1e-6)
    policy.log_variance.assign([[0.5, -3.0]])
    assert policy.variance().shape == (2,)
    np.testing.assert_allclose(policy.variance(), np.exp([0.5, -3.0]), rtol=1e-6)


def test_policy_sample_is_the_mean_plus_scaled_noise_clipped():
    policy = GaussianPolicy([-1.0, -2.0], [1.0, 0.5], hidden=(8,), initial_log_variance=0.3)
    policy.log_variance.assign([[0.4, -2.0]])
    states = tf.constant(np.random.default_rng(0).normal(size=(500, 3)), tf.float32)
    noise = np.random.default_rng(1).normal(size=(500, 2)).astype(np.float32)
    mean = policy.mean(states).numpy().astype(np.float64)
    unclipped = mean + np.exp([0.2, -1.0]) * noise
    np.testing.assert_allclose(policy.sample(states, noise, clip=False), unclipped, rtol=1e-5, atol=1e-6)
    clipped = policy.sample(states, noise).numpy()
    np.testing.assert_allclose(clipped, np.clip(unclipped, [-1.0, -2.0], [1.0, 0.5]), rtol=1e-5, atol=1e-6)
    assert clipped[:, 0].max() == pytest.approx(1.0) and clipped[:, 0].min() == pytest.approx(-1.0)
    assert np.abs(unclipped[:, 0]).max() > 1.0  # the clip was needed
    with pytest.raises(ValueError, match=r"noise must have the mean's shape \[500, 2\]"):
        policy.sample(states, noise[:, :1])


def test_policy_distribution_is_the_diagonal_gaussian():
    policy = make_policy()
    states = tf.zeros([2, 4])
    distribution = policy.distribution(states)
    np.testing.assert_allclose(distribution.mean(), policy.mean(states), rtol=1e-6)
    np.testing.assert_allclose(distribution.variance(), np.tile(policy.variance(), (2, 1)), rtol=1e-6)


def test_policy_rejects_bad_bounds_and_states():
    with pytest.raises(ValueError, match="initial_log_variance"):
        GaussianPolicy([-1.0], [1.0], initial_log_variance=[-1.0, -2.0])
    with pytest.raises(ValueError, match="low < high"):
        GaussianPolicy([1.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        GaussianPolicy([-np.inf], [1.0])
    policy = make_policy()
    policy.mean(tf.zeros([1, 4]))
    with pytest.raises(ValueError, match=r"states must have shape \[batch, 4\], got \[1, 5\]"):
        policy.mean(tf.zeros([1, 5]))
