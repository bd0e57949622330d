"""The replay buffer: next observations across episode ends and wrap-around, which transitions
stay, uniform sampling, memory per transition, save/load."""

import re

import numpy as np
import pytest

from smoothie_tf.replay import Batch, ReplayBuffer


def fill(buffer: ReplayBuffer, episode_lengths, truncate_every: int | None = None) -> list[tuple]:
    """Adds episodes whose observation at (episode e, time t) is [e, t], action e + t/100 and
    reward t; returns every transition added as (s, a, r, s', terminated)."""
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


def drawn(batch: Batch) -> set[tuple[int, int]]:
    """The (episode, t) of every transition in the batch."""
    return {(int(e), int(t)) for e, t in batch.observations}


def check_against(batch: Batch, transitions: list[tuple]) -> None:
    """Every sampled row equals the transition that was added with that (episode, t)."""
    by_key = {(int(s[0]), int(s[1])): (s, a, r, s2, d) for s, a, r, s2, d in transitions}
    for row in range(len(batch.observations)):
        s, a, r, s2, d = by_key[(int(batch.observations[row, 0]), int(batch.observations[row, 1]))]
        np.testing.assert_array_equal(batch.observations[row], s)
        np.testing.assert_array_equal(batch.actions[row], a)
        assert batch.rewards[row] == r and batch.terminated[row] == d
        np.testing.assert_array_equal(batch.next_observations[row], s2)


def test_batch_is_float32_arrays_of_the_right_shapes():
    buffer = ReplayBuffer(capacity=20, observation_dim=2, action_dim=1)
    fill(buffer, [5])
    batch = buffer.sample(7, np.random.default_rng(0))
    assert isinstance(batch, Batch)
    shapes = [(7, 2), (7, 1), (7,), (7, 2), (7,)]
    for array, shape in zip(batch, shapes, strict=True):
        assert isinstance(array, np.ndarray) and array.dtype == np.float32 and array.shape == shape


def test_next_observations_across_episode_ends_and_wrap_around():
    buffer = ReplayBuffer(capacity=50, observation_dim=2, action_dim=1)
    lengths = np.random.default_rng(0).integers(10, 16, size=30)  # episodes of 10+ steps
    transitions = fill(buffer, lengths, truncate_every=3)
    assert buffer.added == int(lengths.sum()) > 7 * 50  # the rings wrapped several times
    # With 10+ steps per episode the observation ring (56 slots) never limits: all 50 stay.
    assert len(buffer) == 50
    batch = buffer.sample(5000, np.random.default_rng(1))
    check_against(batch, transitions)
    assert drawn(batch) == {(int(s[0]), int(s[1])) for s, *_ in transitions[-50:]}
    assert {0.0, 1.0} <= set(batch.terminated.tolist())  # both terminal and non-terminal ends drawn


def test_one_step_episodes_keep_their_next_observation():
    # Each one-step episode needs two slots: 111 slots hold the newest 55 transitions.
    buffer = ReplayBuffer(capacity=100, observation_dim=2, action_dim=1)
    transitions = fill(buffer, [1] * 300)
    assert len(buffer) == 55
    batch = buffer.sample(3000, np.random.default_rng(0))
    check_against(batch, transitions)
    assert drawn(batch) == {(e, 0) for e in range(245, 300)}
    assert batch.terminated.min() == 1.0


def test_a_repeated_observation_is_stored_once_even_across_episodes():
    # The synthetic task: every observation is [1.0]; the reset observation equals the last s'.
    buffer = ReplayBuffer(capacity=100, observation_dim=1, action_dim=1)
    one = np.ones(1, np.float32)
    for k in range(250):
        buffer.add(one, np.array([k], np.float32), float(k), one, True, False)
    assert len(buffer) == 100 and int(buffer.counters[1]) == 251  # 251 slots written, not 500
    batch = buffer.sample(2000, np.random.default_rng(0))
    assert set(batch.actions[:, 0].astype(int).tolist()) == set(range(150, 250))
    np.testing.assert_array_equal(batch.rewards, batch.actions[:, 0])
    np.testing.assert_array_equal(batch.next_observations, np.ones((2000, 1)))


def test_an_observation_that_is_not_the_previous_next_observation_is_stored_too():
    # Nothing is assumed from the flags: s is compared with the previous s'.
    buffer = ReplayBuffer(capacity=10, observation_dim=1, action_dim=1)
    buffer.add([1.0], [0.0], 0.0, [2.0], False, False)
    buffer.add([5.0], [1.0], 1.0, [6.0], False, False)  # not 2.0: a new slot for s
    buffer.add([6.0], [2.0], 2.0, [7.0], False, False)  # shares 6.0
    assert int(buffer.counters[1]) == 5
    batch = buffer.sample(200, np.random.default_rng(0))
    expected = {0.0: (1.0, 2.0), 1.0: (5.0, 6.0), 2.0: (6.0, 7.0)}
    rows = zip(batch.actions[:, 0], batch.observations[:, 0], batch.next_observations[:, 0], strict=True)
    for a, s, s2 in rows:
        assert (s, s2) == expected[a]
    assert set(batch.actions[:, 0].tolist()) == {0.0, 1.0, 2.0}


def test_short_episodes_leave_the_newest_transitions_only():
    buffer = ReplayBuffer(capacity=100, observation_dim=2, action_dim=1)  # 111 observation slots
    transitions = fill(buffer, [4] * 60)  # 5 slots per 4 transitions: the newest 88 fit in 111
    assert len(buffer) == 88
    batch = buffer.sample(4000, np.random.default_rng(0))
    check_against(batch, transitions)
    assert drawn(batch) == {(int(s[0]), int(s[1])) for s, *_ in transitions[-88:]}


def test_sampling_is_uniform():
    buffer = ReplayBuffer(capacity=40, observation_dim=2, action_dim=1)
    fill(buffer, [13, 13, 13, 13, 13])  # wrapped: the newest 40 of 65 transitions
    assert len(buffer) == 40
    n = 200_000
    batch = buffer.sample(n, np.random.default_rng(3))
    counts = np.bincount((batch.observations[:, 0] * 13 + batch.observations[:, 1]).astype(int), minlength=65)
    assert counts[:25].sum() == 0  # the overwritten transitions are never drawn
    counts = counts[25:]
    # Each of the 40 transitions has probability 1/40: counts are Binomial(n, 1/40); allow 5 sigma.
    expected, sigma = n / 40, np.sqrt(n * (1 / 40) * (39 / 40))
    assert np.all(np.abs(counts - expected) < 5 * sigma), counts
    chi2 = np.sum((counts - expected) ** 2 / expected)
    assert chi2 < 80  # 39 degrees of freedom: P(chi2 > 80) < 1e-4


def test_memory_per_transition_is_about_one_observation():
    observation_dim, action_dim, capacity = 11, 3, 10_000  # Hopper's sizes
    buffer = ReplayBuffer(capacity, observation_dim, action_dim)
    per_transition = buffer.nbytes() / capacity
    # 11_001 float32 observations (48.4 bytes each per transition), the action (12), reward (4),
    # terminated (1), the int64 slot of s (8), and 24 bytes of counters for the whole buffer.
    slots = capacity + capacity // 10 + 1
    expected = (slots * 4 * observation_dim + 24) / capacity + 4 * action_dim + 4 + 1 + 8
    assert per_transition == pytest.approx(expected, rel=1e-12)
    assert slots * 4 * observation_dim / capacity <= 1.1001 * 4 * observation_dim
    observation_part = per_transition - (4 * action_dim + 4 + 1 + 8)
    # 48.41 bytes: 1.1 observations, plus one spare slot and the counters spread over 10k; not 88
    assert observation_part < 1.1 * 4 * observation_dim + 0.01


def assert_same_state(a: ReplayBuffer, b: ReplayBuffer) -> None:
    for name in ReplayBuffer.ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_save_and_load_round_trip(tmp_path):
    buffer = ReplayBuffer(capacity=30, observation_dim=2, action_dim=1)
    fill(buffer, [7, 9, 11, 4, 12], truncate_every=2)
    buffer.save(tmp_path / "replay.npz")
    assert list(tmp_path.iterdir()) == [tmp_path / "replay.npz"]  # no temporary left behind
    with np.load(tmp_path / "replay.npz", allow_pickle=False) as data:
        assert all(data[name].dtype != object for name in data.files)
    restored = ReplayBuffer(capacity=30, observation_dim=2, action_dim=1)
    restored.load(tmp_path / "replay.npz")
    assert_same_state(restored, buffer)
    assert (len(restored), restored.added) == (len(buffer), buffer.added) == (30, 43)
    for x, y in zip(
        buffer.sample(64, np.random.default_rng(5)),
        restored.sample(64, np.random.default_rng(5)),
        strict=True,
    ):
        np.testing.assert_array_equal(x, y)
    # Adding continues the same way in both.
    for target in (buffer, restored):
        fill(target, [6, 6])
    assert_same_state(restored, buffer)


def test_a_buffer_not_yet_full_saves_only_the_rows_in_use_and_loads_them_exactly(tmp_path):
    buffer = ReplayBuffer(capacity=1000, observation_dim=2, action_dim=1)
    fill(buffer, [7, 9], truncate_every=2)  # 16 transitions in 18 observation slots
    buffer.save(tmp_path / "replay.npz")
    with np.load(tmp_path / "replay.npz", allow_pickle=False) as data:
        rows = {name: len(data[name]) for name in ReplayBuffer.ARRAYS}
    assert rows == {"observations": 18, "actions": 16, "rewards": 16, "terminated": 16} | {
        "observation_slot": 16,
        "counters": 3,
    }
    # Loaded into a buffer that held other data: the unused rows are zeros again, as in `buffer`.
    restored = ReplayBuffer(capacity=1000, observation_dim=2, action_dim=1)
    fill(restored, [40, 40])
    restored.load(tmp_path / "replay.npz")
    assert_same_state(restored, buffer)
    fill(buffer, [5, 3])  # and both go on alike
    fill(restored, [5, 3])
    assert_same_state(restored, buffer)


def test_a_file_with_every_row_loads_and_one_missing_rows_in_use_is_refused(tmp_path):
    buffer = ReplayBuffer(capacity=50, observation_dim=2, action_dim=1)
    fill(buffer, [6, 6])
    arrays = {name: getattr(buffer, name) for name in ReplayBuffer.ARRAYS}  # every row: older files
    np.savez(tmp_path / "full.npz", shape=np.array([50, 2, 1, 56]), **arrays)
    restored = ReplayBuffer(capacity=50, observation_dim=2, action_dim=1)
    restored.load(tmp_path / "full.npz")
    assert_same_state(restored, buffer)
    other = ReplayBuffer(capacity=50, observation_dim=2, action_dim=1)
    expected = {  # 12 transitions and 14 observation slots in use; each array one row short
        "actions": (11, "float32[11, 1], not float32[12..50, 1]"),
        "observations": (13, "float32[13, 2], not float32[14..56, 2]"),
        "observation_slot": (11, "int64[11], not int64[12..50]"),
    }
    for name, (rows, message) in expected.items():
        np.savez(
            tmp_path / "short.npz", shape=np.array([50, 2, 1, 56]), **(arrays | {name: arrays[name][:rows]})
        )
        with pytest.raises(ValueError, match=re.escape(f"short.npz: {name} is {message}")):
            other.load(tmp_path / "short.npz")
        assert other.added == 0 and not other.actions.any() and not other.observations.any()


def test_save_replaces_an_existing_file(tmp_path):
    path = tmp_path / "replay.npz"
    first = ReplayBuffer(capacity=10, observation_dim=2, action_dim=1)
    fill(first, [3])
    first.save(path)
    fill(first, [4])
    first.save(path)
    restored = ReplayBuffer(capacity=10, observation_dim=2, action_dim=1)
    restored.load(path)
    assert restored.added == 7


def test_load_refuses_another_shape_or_a_damaged_file_and_changes_nothing(tmp_path):
    ReplayBuffer(capacity=30, observation_dim=2, action_dim=1).save(tmp_path / "replay.npz")
    buffer = ReplayBuffer(capacity=30, observation_dim=3, action_dim=1)
    buffer.add(np.ones(3), np.ones(1), 1.0, np.full(3, 2.0), False, False)
    before = {name: getattr(buffer, name).copy() for name in ReplayBuffer.ARRAYS}
    with pytest.raises(
        ValueError, match=r"has \(capacity, observation_dim, action_dim, slots\) \(30, 2, 1, 34\)"
    ):
        buffer.load(tmp_path / "replay.npz")
    (tmp_path / "damaged.npz").write_bytes((tmp_path / "replay.npz").read_bytes()[:100])
    with pytest.raises(ValueError, match="cannot read replay buffer"):
        buffer.load(tmp_path / "damaged.npz")
    with pytest.raises(ValueError, match="cannot read replay buffer"):
        buffer.load(tmp_path / "missing.npz")
    for name, array in before.items():
        np.testing.assert_array_equal(getattr(buffer, name), array)


def test_sampling_an_empty_buffer_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(capacity=10, observation_dim=2, action_dim=1).sample(4, np.random.default_rng(0))


def test_add_refuses_wrong_shapes_before_storing_anything():
    buffer = ReplayBuffer(capacity=10, observation_dim=2, action_dim=1)
    with pytest.raises(ValueError, match=r"action has shape \(2,\), expected \(1,\)"):
        buffer.add(np.zeros(2), np.zeros(2), 0.0, np.ones(2), False, False)
    assert (len(buffer), int(buffer.counters[1])) == (0, 0)


@pytest.mark.parametrize("seed", range(6))
def test_random_episodes_keep_the_longest_newest_run_that_fits(seed):
    """Whatever the episode lengths: every sampled transition is the one added, the buffer holds
    the newest len(buffer) transitions, and one more would not fit in one of the two rings."""
    rng = np.random.default_rng(seed)
    capacity = int(rng.integers(5, 60))
    buffer = ReplayBuffer(capacity, observation_dim=2, action_dim=1, extra_observations=rng.uniform(0, 0.5))
    transitions = fill(buffer, rng.integers(1, 12, size=40), truncate_every=2)
    size = len(buffer)
    batch = buffer.sample(30 * capacity, rng)
    check_against(batch, transitions)
    assert drawn(batch) == {(int(s[0]), int(s[1])) for s, *_ in transitions[-size:]}

    def slots_spanned(newest: list[tuple]) -> int:
        starts = sum(
            1
            for (s, *_), (_, _, _, previous, _) in zip(newest[1:], newest, strict=False)
            if not np.array_equal(s, previous)
        )
        return len(newest) + starts + 1

    assert slots_spanned(transitions[-size:]) <= len(buffer.observations)
    assert size == capacity or slots_spanned(transitions[-size - 1 :]) > len(buffer.observations)


def test_the_saved_file_holds_exactly_the_buffer_arrays(tmp_path):
    ReplayBuffer(capacity=4, observation_dim=2, action_dim=1).save(tmp_path / "replay.npz")
    with np.load(tmp_path / "replay.npz", allow_pickle=False) as data:
        assert sorted(data.files) == sorted(["shape", *ReplayBuffer.ARRAYS])
        assert data["shape"].tolist() == [4, 2, 1, 6]
