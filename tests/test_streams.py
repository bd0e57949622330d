"""Per-member random streams: reproducible, member k's draws a function of its seed alone (the same in
a population of 1 or of 8, eagerly or compiled), the right distributions (Monte Carlo), and a
member's stream restored from its saved slices continues with the same draws."""

import numpy as np
import pytest
import tensorflow as tf

from smoothie_tf.streams import MemberStreams

SEEDS = [5, 7, 11, 13, 17, 19, 23, 2**62 + 29]


def draws(streams: MemberStreams, calls: int = 3) -> list[np.ndarray]:
    """Normal and uniform draws, in turn."""
    out = []
    for _ in range(calls):
        out.append(streams.normal([2, 3]).numpy())
        out.append(streams.uniform([4], minval=-1.0, maxval=2.0).numpy())
    return out


def test_same_seeds_same_draws_and_every_draw_new():
    first, again = draws(MemberStreams(SEEDS[:3])), draws(MemberStreams(SEEDS[:3]))
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    normal = first[0]
    assert normal.shape == (3, 2, 3) and first[1].shape == (3, 4)
    # Members differ from each other, and a member's successive draws differ.
    assert len({normal[k, 0, 0] for k in range(3)}) == 3
    assert not np.any(first[0] == first[2])
    other = draws(MemberStreams([1, 2, 3]))
    assert not np.any(other[0] == first[0])


def test_a_members_draws_are_the_same_alone_or_in_a_population_and_compiled():
    population = MemberStreams(SEEDS, name="acting")
    alone = [MemberStreams([seed]) for seed in (SEEDS[3], SEEDS[7])]
    together = draws(population)
    for k, single in zip((3, 7), alone, strict=True):
        for mixed, own in zip(together, draws(single), strict=True):
            np.testing.assert_array_equal(mixed[k], own[0])
    # Inside a compiled step, member 3 draws what it draws eagerly.
    compiled_population = MemberStreams(SEEDS)
    eager_alone = MemberStreams([SEEDS[3]])
    step = tf.function(lambda: compiled_population.normal([5]), jit_compile=True)
    graph_step = tf.function(lambda: eager_alone.normal([5]))  # a plain graph: no XLA
    for _ in range(3):
        np.testing.assert_array_equal(step().numpy()[3], graph_step().numpy()[0])
    np.testing.assert_array_equal(compiled_population.counters.numpy(), 3)


def test_normal_and_uniform_moments_and_no_correlation_across_members_or_draws():
    """n = 200 000 draws per member: means within 4 standard errors, variances within 4 standard
    errors of the sample variance (sqrt(2/n) relative for a normal, sqrt(4/5/n) for a uniform),
    correlations within 4/sqrt(n)."""
    n = 200_000
    streams = MemberStreams([3, 4, 1000])
    normal, later = streams.normal([n]).numpy().astype(np.float64), streams.normal([n]).numpy()
    uniform = streams.uniform([n], minval=-1.0, maxval=3.0).numpy().astype(np.float64)
    for k in range(3):
        assert abs(normal[k].mean()) < 4 / np.sqrt(n)
        assert normal[k].var() == pytest.approx(1.0, rel=4 * np.sqrt(2 / n))
        assert np.mean(np.abs(normal[k]) < 1.0) == pytest.approx(0.682689, abs=4 * np.sqrt(0.25 / n))
        assert uniform[k].min() >= -1.0 and uniform[k].max() < 3.0
        assert abs(uniform[k].mean() - 1.0) < 4 * np.sqrt(16 / 12 / n)
        # Var of U(a, b) is (b − a)²/12; the sample variance's relative sd is sqrt(4/5/n).
        assert uniform[k].var() == pytest.approx(16 / 12, rel=4 * np.sqrt(0.8 / n))
        assert abs(np.corrcoef(normal[k], later[k])[0, 1]) < 4 / np.sqrt(n)
    for j, k in ((0, 1), (0, 2), (1, 2)):
        assert abs(np.corrcoef(normal[j], normal[k])[0, 1]) < 4 / np.sqrt(n)


def test_a_members_stream_restored_from_its_slices_continues_identically(tmp_path):
    population = MemberStreams(SEEDS[:4], name="training")
    draws(population, calls=2)
    saved = {name: variable.numpy()[2] for name, variable in population.state_variables().items()}
    assert set(saved) == {"training/keys", "training/counters"}
    path = tf.train.Checkpoint(streams=population).write(str(tmp_path / "streams"))
    expected = draws(population)

    restored = MemberStreams([99], name="training")  # another seed, a population of one
    for name, variable in restored.state_variables().items():
        variable[0].assign(saved[name])
    for mixed, own in zip(expected, draws(restored), strict=True):
        np.testing.assert_array_equal(own[0], mixed[2])

    whole = MemberStreams([0, 0, 0, 0], name="training")
    tf.train.Checkpoint(streams=whole).read(path).assert_consumed()
    for mixed, own in zip(expected, draws(whole), strict=True):
        np.testing.assert_array_equal(own, mixed)


def test_reseeding_restarts_chosen_members_only():
    streams = MemberStreams([1, 2, 3])
    untouched = MemberStreams([1, 2, 3])
    draws(streams)
    draws(untouched)
    streams.reseed([1], [50])
    after = draws(streams)
    for mixed, fresh, other in zip(after, draws(MemberStreams([50])), draws(untouched), strict=True):
        np.testing.assert_array_equal(mixed[1], fresh[0])  # member 1 restarted the stream of 50
        np.testing.assert_array_equal(mixed[[0, 2]], other[[0, 2]])  # the others went on
    streams.reset_from_seeds([1, 2, 3])
    for again, first in zip(draws(streams), draws(MemberStreams([1, 2, 3])), strict=True):
        np.testing.assert_array_equal(again, first)


@pytest.mark.parametrize("seeds", [[], [-1], [2**63], [1.5], [[1, 2]]])
def test_rejects_seeds_that_are_not_one_63_bit_integer_per_member(seeds):
    with pytest.raises(ValueError, match="seeds"):
        MemberStreams(seeds)


def test_reseed_rejects_bad_members():
    streams = MemberStreams([1, 2])
    with pytest.raises(ValueError, match="members"):
        streams.reseed([2], [5])
    with pytest.raises(ValueError, match="members"):
        streams.reseed([0, 0], [5, 6])
    with pytest.raises(ValueError, match="seeds for"):
        streams.reset_from_seeds([1, 2, 3])
