"""The replay buffer: next observations across episode ends and wrap-around, uniform sampling,
memory per transition, save/load."""

import numpy as np
import pytest

from smoothie_tf.replay import ReplayBuffer


def fill(buffer: ReplayBuffer, episode_lengths, truncate_every=None):
    """Adds episodes whose observation at (episode e, time t) is [e, t]; returns the transitions."""
    transitions = []
    for episode, length in enumerate(episode_lengths):
        for t in range(length):
            observation = np.array([episode, t], np.float32)
            next_observation = np.array([episode, t + 1], np.float32)
            ended = t == length - 1
            truncated = ended and truncate_every is not None and episode % truncate_every == 0
            terminated = ended and not truncated
            action = np.array([episode + t / 100.0], np.float32)
            buffer.add(observation, action, float(t), next_observation, terminated, truncated)
            transitions.append((observation, action, float(t), next_observation, float(terminated)))
    return transitions


def check_batch_is_consistent(batch):
    """Every sampled s' must be the s of the same episode one step later."""
    np.testing.assert_array_equal(batch.next_observations[:, 0], batch.observations[:, 0])
    np.testing.assert_array_equal(batch.next_observations[:, 1], batch.observations[:, 1] + 1)
    np.testing.assert_allclose(
        batch.actions[:, 0], batch.observations[:, 0] + batch.observations[:, 1] / 100.0
    )
    np.testing.assert_array_equal(batch.rewards, batch.observations[:, 1])


def test_next_observations_across_episode_ends_and_wrap_around():
    # 20 episode-end slots: more than the at most 17 episode ends among 50 transitions.
    buffer = ReplayBuffer(capacity=50, observation_dim=2, action_dim=1, final_fraction=0.4)
    lengths = np.random.default_rng(0).integers(3, 15, size=40)
    fill(buffer, lengths, truncate_every=3)
    assert len(buffer) == 50 and buffer.added == int(lengths.sum())
    batch = buffer.sample(5000, np.random.default_rng(1))
    check_batch_is_consistent(batch)
    # The last 50 transitions but the oldest, whose s the newest s' overwrote, are drawn.
    ranks = sorted({(int(e), int(t)) for e, t in batch.observations})
    everything = [(e, t) for e, length in enumerate(lengths) for t in range(length)]
    assert set(ranks) == set(everything[-49:])


def test_terminated_and_truncated_flags():
    buffer = ReplayBuffer(capacity=100, observation_dim=2, action_dim=1)
    transitions = fill(buffer, [4, 5, 3], truncate_every=2)  # episodes 0 and 2 truncated, 1 terminated
    batch = buffer.sample(2000, np.random.default_rng(0))
    for observation, terminated in zip(batch.observations, batch.terminated, strict=True):
        episode, t = observation
        expected = [o for o in transitions if o[0][0] == episode and o[0][1] == t][0][4]
        assert terminated == expected
    assert batch.terminated.max() == 1.0  # the terminal transition was drawn


def test_one_step_episodes_keep_their_next_observation():
    buffer = ReplayBuffer(capacity=100, observation_dim=2, action_dim=1, final_fraction=1.0)
    fill(buffer, [1] * 80)
    check_batch_is_consistent(buffer.sample(1000, np.random.default_rng(0)))


def test_short_episodes_drop_the_oldest_ends_rather_than_return_a_wrong_next_observation():
    buffer = ReplayBuffer(capacity=100, observation_dim=2, action_dim=1)  # 10 episode-end slots
    fill(buffer, [2] * 50)
    batch = buffer.sample(3000, np.random.default_rng(0))
    check_batch_is_consistent(batch)
    ends = batch.observations[batch.observations[:, 1] == 1]
    assert ends[:, 0].min() >= 40  # only the last ten episodes' ends survive


def test_sampling_is_uniform():
    buffer = ReplayBuffer(capacity=40, observation_dim=2, action_dim=1)
    fill(buffer, [10, 10, 10, 10])
    n = 200_000
    batch = buffer.sample(n, np.random.default_rng(3))
    keys = batch.observations[:, 0] * 10 + batch.observations[:, 1]
    counts = np.bincount(keys.astype(int), minlength=40)
    # Each of the 40 transitions has probability 1/40: counts are Binomial(n, 1/40); allow 5 sigma.
    expected, sigma = n / 40, np.sqrt(n * (1 / 40) * (39 / 40))
    assert np.all(np.abs(counts - expected) < 5 * sigma), counts
    chi2 = np.sum((counts - expected) ** 2 / expected)
    assert chi2 < 80  # 39 degrees of freedom: P(chi2 > 80) < 1e-4


def test_memory_per_transition_is_about_one_observation():
    observation_dim, action_dim, capacity = 11, 3, 10_000
    buffer = ReplayBuffer(capacity, observation_dim, action_dim)
    observation_bytes = 4 * observation_dim
    extra = 4 * action_dim + 4 + 4 + 1 + 4 + 8 * 0.1  # action, reward, terminated, end flag, slot, owner
    per_transition = (buffer.nbytes() - buffer.counters.nbytes) / capacity
    assert per_transition <= 1.1 * observation_bytes + extra + 1e-9
    assert per_transition >= observation_bytes  # it does hold every observation


def test_save_and_load_round_trip(tmp_path):
    buffer = ReplayBuffer(capacity=30, observation_dim=2, action_dim=1)
    fill(buffer, [7, 9, 11, 4], truncate_every=2)
    buffer.save(tmp_path / "replay.npz")
    restored = ReplayBuffer(capacity=30, observation_dim=2, action_dim=1)
    restored.load(tmp_path / "replay.npz")
    for name in (*ReplayBuffer.ARRAYS, "counters"):
        np.testing.assert_array_equal(getattr(restored, name), getattr(buffer, name))
    a = buffer.sample(64, np.random.default_rng(5))
    b = restored.sample(64, np.random.default_rng(5))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    # Adding continues the same way in both.
    for target in (buffer, restored):
        target.add(
            np.array([9, 0], np.float32), np.zeros(1, np.float32), 0.0, np.array([9, 1], np.float32), 0, 0
        )
    np.testing.assert_array_equal(restored.states, buffer.states)
    assert list(tmp_path.iterdir()) == [tmp_path / "replay.npz"]  # no temporary left behind


def test_load_refuses_another_shape(tmp_path):
    ReplayBuffer(capacity=30, observation_dim=2, action_dim=1).save(tmp_path / "replay.npz")
    with pytest.raises(ValueError, match="not"):
        ReplayBuffer(capacity=30, observation_dim=3, action_dim=1).load(tmp_path / "replay.npz")


def test_sampling_an_empty_buffer_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(capacity=10, observation_dim=2, action_dim=1).sample(4, np.random.default_rng(0))
