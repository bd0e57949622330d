"""Per-member optimisation against independent truths: MemberAdam against keras.optimizers.Adam run
on each member's slice alone, clipping against tf.clip_by_global_norm per member, Polyak by hand,
a member's optimiser state that continues bit for bit once restored from its slices, and the
per-member sums and finite checks against NumPy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from smoothie_tf.optimizers import (
    MATMUL_SUM_MIN_SIZE,
    MemberAdam,
    clip_by_member_norm,
    member_all_finite,
    member_global_norm,
    member_sums,
    polyak_update,
    sum_chunk,
)

SHAPES = [(4, 3), (3,), (2, 2, 2)]  # per member: a kernel, a bias, a rank-3 tensor
RATES = [1e-3, 3e-2, 0.2]


def member_variables(rng, members: int, keras_variables: bool = False):
    make = keras.Variable if keras_variables else tf.Variable
    return [make(rng.normal(size=(members, *shape)).astype(np.float32)) for shape in SHAPES]


def gradient_steps(rng, members: int, steps: int):
    """Random gradients of varied scales (Adam is scale-free: large and small ones both matter)."""
    scales = 10.0 ** rng.uniform(-3, 1, size=(steps, len(SHAPES)))
    return [
        [
            (scales[t, i] * rng.normal(size=(members, *shape))).astype(np.float32)
            for i, shape in enumerate(SHAPES)
        ]
        for t in range(steps)
    ]


def compiled_apply(optimizer, variables):
    return tf.function(lambda gradients: optimizer.apply(gradients, variables), jit_compile=True)


def test_member_adam_matches_keras_adam_on_each_members_slice_alone():
    """Member k with lr_k follows keras.optimizers.Adam(lr_k) run on its slice alone: weights
    moved, both moments and the step count, after each of 7 steps (XLA-compiled apply, Keras
    variables as the networks hold); member 1's rate changes after step 3 on both sides."""
    rng = np.random.default_rng(0)
    members, steps = len(RATES), 7
    variables = member_variables(rng, members, keras_variables=True)
    initial = [v.numpy().copy() for v in variables]
    optimizer = MemberAdam(variables, RATES, name="critic_adam")
    apply = compiled_apply(optimizer, variables)
    references = []  # per member: (its keras Adam, its variables)
    for k, rate in enumerate(RATES):
        own = [tf.Variable(x[k]) for x in initial]
        reference = keras.optimizers.Adam(rate)
        reference.build(own)
        references.append((reference, own))
    for t, gradients in enumerate(gradient_steps(rng, members, steps)):
        if t == 3:
            optimizer.learning_rate[1].assign(0.05)
            references[1][0].learning_rate = 0.05
        apply([tf.constant(g) for g in gradients])
        for k, (reference, own) in enumerate(references):
            reference.apply([tf.constant(g[k]) for g in gradients], own)
            for i, variable in enumerate(variables):
                # The displacement, not the weights: an error in the step would hide in |w| ~ 1.
                np.testing.assert_allclose(
                    variable.numpy()[k] - initial[i][k], own[i].numpy() - initial[i][k], rtol=2e-5, atol=1e-8
                )
                for ours, theirs in (
                    (optimizer.momentums, reference._momentums),
                    (optimizer.velocities, reference._velocities),
                ):
                    # float32 round-off of sums of gradients of mixed scales: relative to the largest.
                    expected = theirs[i].numpy()
                    np.testing.assert_allclose(
                        ours[i].numpy()[k], expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max()
                    )
            assert optimizer.iterations.numpy()[k] == reference.iterations.numpy() == t + 1
    # The three rates did move the members differently (not one rate for all).
    moved = [np.abs(variables[0].numpy()[k] - initial[0][k]).mean() for k in range(members)]
    assert moved[0] < moved[1] < moved[2]


def test_a_members_steps_ignore_the_other_members_gradients():
    rng = np.random.default_rng(1)
    steps = gradient_steps(rng, 3, 4)
    finals = []
    for change_others in (False, True):
        variables = member_variables(np.random.default_rng(2), 3)
        optimizer = MemberAdam(variables, RATES)
        apply = compiled_apply(optimizer, variables)
        for gradients in steps:
            gradients = [g.copy() for g in gradients]
            if change_others:
                for g in gradients:
                    g[[0, 2]] = 100.0 * rng.normal(size=g[[0, 2]].shape)
            apply([tf.constant(g) for g in gradients])
        finals.append([v.numpy()[1] for v in variables])
    for same, other in zip(*finals, strict=True):
        np.testing.assert_array_equal(same, other)


def test_none_gradients_leave_their_variable_and_moments_alone():
    rng = np.random.default_rng(3)
    variables = member_variables(rng, 2)
    before = [v.numpy().copy() for v in variables]
    optimizer = MemberAdam(variables, [1e-2, 1e-2])
    gradients = gradient_steps(rng, 2, 1)[0]
    # Any order, and a None: only variables 0 and 2 move.
    optimizer.apply(
        [tf.constant(gradients[2]), None, tf.constant(gradients[0])],
        [variables[2], variables[1], variables[0]],
    )
    np.testing.assert_array_equal(variables[1].numpy(), before[1])
    np.testing.assert_array_equal(optimizer.momentums[1].numpy(), 0.0)
    assert not np.any(variables[0].numpy() == before[0]) and not np.any(variables[2].numpy() == before[2])
    # First Adam step, m = (1 − β1)g, v = (1 − β2)g², α = lr·sqrt(1 − β2)/(1 − β1): the weight moves by
    # lr·g/(|g| + ε/sqrt(1 − β2)), ε outside the bias correction as Keras (the smaller |g|, the more ε shows).
    g = gradients[0].astype(np.float64)
    expected = 1e-2 * g / (np.abs(g) + 1e-7 / np.sqrt(1 - 0.999))
    np.testing.assert_allclose(before[0] - variables[0].numpy(), expected, rtol=2e-4)


def test_state_variables_are_named_and_carry_the_member_axis():
    variables = member_variables(np.random.default_rng(4), 3)
    optimizer = MemberAdam(variables, RATES, name="actor_adam")
    state = optimizer.state_variables()
    expected = {"actor_adam/learning_rate", "actor_adam/iterations"}
    expected |= {f"actor_adam/{slot}/{i}" for slot in "mv" for i in range(len(SHAPES))}
    assert set(state) == expected
    for name, variable in state.items():
        assert variable.shape[0] == 3 and not variable.trainable, name
    assert state["actor_adam/iterations"].dtype == tf.int64
    for i, shape in enumerate(SHAPES):
        assert tuple(state[f"actor_adam/m/{i}"].shape) == (3, *shape)
    # The weights are not the optimiser's: a checkpoint of it holds its state alone.
    assert len(optimizer.variables) == len(expected)


def test_a_members_state_restored_from_its_slices_continues_identically():
    """Member 1 of a population of 3 after 3 steps, saved as its slices (weights and optimiser
    state) and restored into a population of one: the next 3 steps are bit for bit member 1's."""
    rng = np.random.default_rng(5)
    steps = gradient_steps(rng, 3, 6)
    variables = member_variables(rng, 3)
    optimizer = MemberAdam(variables, RATES, name="adam")
    apply = compiled_apply(optimizer, variables)
    for gradients in steps[:3]:
        apply([tf.constant(g) for g in gradients])
    saved_weights = [v.numpy()[1] for v in variables]
    saved_state = {name: v.numpy()[1] for name, v in optimizer.state_variables().items()}

    alone = [tf.Variable(np.zeros((1, *shape), np.float32)) for shape in SHAPES]
    restored = MemberAdam(alone, [0.5], name="adam")
    for variable, value in zip(alone, saved_weights, strict=True):
        variable[0].assign(value)
    for name, variable in restored.state_variables().items():
        variable[0].assign(saved_state[name])
    apply_alone = compiled_apply(restored, alone)
    for gradients in steps[3:]:
        apply([tf.constant(g) for g in gradients])
        apply_alone([tf.constant(g[1:2]) for g in gradients])
        for variable, own in zip(variables, alone, strict=True):
            np.testing.assert_array_equal(own.numpy()[0], variable.numpy()[1])
    assert restored.iterations.numpy()[0] == optimizer.iterations.numpy()[1] == 6


def test_member_adam_rejects_variables_without_the_member_axis():
    with pytest.raises(ValueError, match="member axis"):
        MemberAdam([tf.Variable(tf.zeros([2, 3])), tf.Variable(tf.zeros([3, 3]))], [1e-3, 1e-3])
    with pytest.raises(ValueError, match="one per member"):
        MemberAdam([tf.Variable(tf.zeros([2, 3]))], 1e-3)
    optimizer = MemberAdam([tf.Variable(tf.zeros([2, 3]))], [1e-3, 1e-3])
    with pytest.raises(ValueError, match="not built with"):
        optimizer.apply([tf.zeros([2, 3])], [tf.Variable(tf.zeros([2, 3]))])


def test_clip_by_member_norm_is_clip_by_global_norm_on_each_member():
    rng = np.random.default_rng(6)
    gradients = [rng.normal(size=(3, *shape)).astype(np.float32) for shape in SHAPES]
    clip_norm = np.array([0.5, 100.0, 2.0], np.float32)  # binds, does not bind, binds
    clipped, norms = clip_by_member_norm([tf.constant(g) for g in gradients], clip_norm)
    for k in range(3):
        expected, norm = tf.clip_by_global_norm([g[k] for g in gradients], clip_norm[k])
        assert norms.numpy()[k] == pytest.approx(norm.numpy(), rel=1e-6)
        assert member_global_norm(gradients).numpy()[k] == pytest.approx(norm.numpy(), rel=1e-6)
        assert norms.numpy()[k] == pytest.approx(
            np.sqrt(sum(np.sum(g[k].astype(np.float64) ** 2) for g in gradients))
        )
        for ours, theirs in zip(clipped, expected, strict=True):
            np.testing.assert_allclose(ours.numpy()[k], theirs.numpy(), rtol=1e-6)
    assert norms.numpy()[0] > 0.5 and norms.numpy()[1] < 100.0  # both branches were taken
    for ours, g in zip(clipped, gradients, strict=True):
        np.testing.assert_array_equal(ours.numpy()[1], g[1])


def test_clip_by_member_norm_compiled_keeps_nones_and_spoils_only_a_nonfinite_member():
    gradients = [tf.constant([[3.0, 0.0], [np.inf, 1.0]]), None, tf.constant([[4.0], [1.0]])]
    clip = tf.function(
        lambda g0, g2: clip_by_member_norm([g0, None, g2], tf.constant([1.0, 1.0])), jit_compile=True
    )
    clipped, norms = clip(gradients[0], gradients[2])
    assert clipped[1] is None
    np.testing.assert_allclose(norms.numpy()[0], 5.0)
    np.testing.assert_allclose(clipped[0].numpy()[0], [0.6, 0.0], rtol=1e-6)
    np.testing.assert_allclose(clipped[2].numpy()[0], [0.8], rtol=1e-6)
    assert np.isinf(norms.numpy()[1]) and np.all(np.isnan(clipped[0].numpy()[1]))  # as tf.clip_by_global_norm


def test_polyak_update_by_hand():
    rng = np.random.default_rng(7)
    sources = member_variables(rng, 3)
    targets = member_variables(rng, 3)
    before = [t.numpy().copy() for t in targets]
    tau = np.array([0.0, 0.01, 1.0], np.float32)
    tf.function(lambda: polyak_update(targets, sources, tf.constant(tau)), jit_compile=True)()
    for target, source, old in zip(targets, sources, before, strict=True):
        for k in range(3):
            expected = (1 - tau[k]) * old[k] + tau[k] * source.numpy()[k]
            np.testing.assert_allclose(target.numpy()[k], expected, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(target.numpy()[0], old[0])  # τ = 0: unchanged
        np.testing.assert_array_equal(target.numpy()[2], source.numpy()[2])  # τ = 1: a copy
    middle = targets[0].numpy().copy()
    polyak_update(targets[:1], sources[:1], 0.5)  # one τ for every member
    np.testing.assert_allclose(targets[0].numpy(), 0.5 * middle + 0.5 * sources[0].numpy(), rtol=1e-6)


# Slices summed as a matmul (403·300 and 64·64: chunks of 195 and 256 entries) and by a plain
# reduction (small, or a prime number of entries).
SUM_SHAPES = [(3, 403, 300), (2, 64, 64), (3, 4, 5), (2, 4099)]


@pytest.mark.parametrize("shape", SUM_SHAPES)
def test_member_sums_and_the_global_norm_match_numpy_in_float64(shape):
    size = int(np.prod(shape[1:]))
    matmul = sum_chunk(size) is not None
    assert matmul == (size >= MATMUL_SUM_MIN_SIZE and shape != (2, 4099))
    rng = np.random.default_rng(size)
    x = (rng.normal(size=shape) + 0.5).astype(np.float32)  # a mean of 0.5: no cancellation
    expected = x.reshape(shape[0], -1).astype(np.float64).sum(axis=1)
    compiled = tf.function(member_sums, jit_compile=True)
    for sums in (member_sums(tf.constant(x)), compiled(tf.constant(x))):
        assert sums.shape == (shape[0],)
        np.testing.assert_allclose(sums.numpy(), expected, rtol=2e-6)
    norms = member_global_norm([tf.constant(x), tf.constant(x[:, :1])])
    squares = (x.astype(np.float64) ** 2).reshape(shape[0], -1).sum(axis=1)
    squares += (x[:, :1].astype(np.float64) ** 2).reshape(shape[0], -1).sum(axis=1)
    np.testing.assert_allclose(norms.numpy(), np.sqrt(squares), rtol=2e-6)


@pytest.mark.parametrize("shape", SUM_SHAPES)
def test_member_all_finite_finds_one_inf_or_nan_anywhere_and_sums_carry_them(shape):
    """A single inf or NaN at the first, a middle or the last entry of one member's slice spoils
    that member's check alone, eagerly and compiled; its sum is then inf or NaN (the clipping's
    NaN for a non-finite norm rests on this)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=shape).astype(np.float32)
    checks = (member_all_finite, tf.function(member_all_finite, jit_compile=True))
    sums = (member_sums, tf.function(member_sums, jit_compile=True))
    for check in checks:
        assert check(tf.constant(x)).numpy().tolist() == [True] * shape[0]
    size = int(np.prod(shape[1:]))
    for value in (np.inf, -np.inf, np.nan):
        for position in (0, size // 2 + 1, size - 1):
            broken = x.copy()
            broken[1].reshape(-1)[position] = value
            expected = [k != 1 for k in range(shape[0])]
            for check in checks:
                assert check(tf.constant(broken)).numpy().tolist() == expected, (value, position)
            for member_sum in sums:
                total = member_sum(tf.constant(broken)).numpy()
                assert np.all(np.isfinite(np.delete(total, 1)))
                if np.isnan(value):
                    assert np.isnan(total[1])
                else:
                    assert total[1] == value


def test_member_all_finite_beyond_float32s_exact_integers():
    """A member's slice of 2**24 + 256 entries: a float32 count of its finite entries would round
    2**24 + 255 (one inf or NaN) to 2**24 + 256 (float32's integers are 2 apart there) and call the
    member finite; one inf or NaN spoils its member alone, eagerly and compiled."""
    size = 2**24 + 256
    assert sum_chunk(size) is not None  # a slice that a count would sum as a matmul
    assert np.float32(size - 1) == np.float32(size)  # the entry such a count would lose
    checks = (member_all_finite, tf.function(member_all_finite, jit_compile=True))
    x = np.zeros((1, size), np.float32)
    for check in checks:
        assert check(tf.constant(x)).numpy().tolist() == [True]
    for value in (np.nan, np.inf):
        x[0, size // 2] = value
        for check in checks:
            assert check(tf.constant(x)).numpy().tolist() == [False], value
    two = np.zeros((2, size), np.float32)
    two[1, -1] = np.nan
    for check in checks:
        assert check(tf.constant(two)).numpy().tolist() == [True, False]
