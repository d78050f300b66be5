"""simkit.kernels.spares: buffer sets kept from one simulation for the next, and their users."""
import threading

import numpy as np

from simkit.kernels.spares import Spares


def test_take_hands_a_given_set_out_once_and_keeps_only_the_newest_layouts():
    s = Spares(keep=2)
    made = []

    def make():
        made.append(object())
        return made[-1]
    a = s.take("a", make)
    assert s.take("a", make) is not a                  # in use: a second caller gets its own
    s.give("a", a)
    assert s.take("a", make) is a and s.take("a", make) is not a   # handed out once
    s.give("a", a)
    s.give("b", "B")
    s.give("c", "C")                                   # "a" is the oldest of three: dropped
    assert s.take("a", make) is not a and s.take("b", make) == "B" and s.take("c", make) == "C"


def test_take_and_give_from_threads_never_share_a_set():
    s, seen, lock = Spares(keep=1), [], threading.Lock()

    def worker():
        for _ in range(200):
            obj = s.take("k", lambda: [0])
            obj[0] += 1                                # a shared set would lose increments
            with lock:
                seen.append(obj)
            s.give("k", obj)
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(o[0] for o in {id(o): o for o in seen}.values()) == 800


def test_fast_loop_reuses_its_chunk_buffers_and_gives_the_same_sums():
    """Two minibatches in a row: the second runs in the first's buffers (stale values in them
    must not leak into the results) and equals a run in fresh buffers."""
    from simkit.dynamics.controller import Learning
    from simkit.dynamics.noise import LayerDraws
    from simkit.kernels import dfc_fast

    from test_dfc import parity_case
    net, cache, P, dyn, _ = parity_case("ou", "ce", True, True, 1.5)
    learn = Learning("nonlinear_difference", "highpass", a_u=0.3)
    xi = np.random.default_rng(9).normal(size=(dyn.T - 1, 3, 15))
    offs = np.cumsum([0, 6, 5, 4])

    def draws(t0, t1):
        return LayerDraws([xi[t0:t1, :, offs[l]:offs[l + 1]] for l in range(3)], xi[t0:t1])

    def run(r0):
        return dfc_fast.simulate_fast(np, P, cache.a[1:], r0, dyn, learn, draws)
    dfc_fast.SPARES.clear()
    other = [h * 0.5 for h in cache.h[1:]]              # another start: other values in buffers
    run(other)
    kept = list(dfc_fast.SPARES._sets.values())
    assert len(kept) == 1
    reused = run(cache.h[1:])
    assert list(dfc_fast.SPARES._sets.values())[0] is kept[0]          # the same set came back
    dfc_fast.SPARES.clear()
    fresh = run(cache.h[1:])
    for k in ("A", "Ab", "C", "v", "v_fb", "r", "v_ff"):
        for g, r in zip(getattr(reused, k), getattr(fresh, k)):
            np.testing.assert_array_equal(g, r)


def test_noise_source_with_spares_draws_the_same_numbers_into_reused_buffers():
    from simkit.backend import get_backend
    from simkit.dynamics.noise import noise_source
    bk, spares = get_backend("numpy", announce=False), Spares()

    def all_draws(seed, sp):
        draw, out = noise_source(bk, seed, 3, [4, 2], 120, spares=sp), []
        for t0 in range(0, 120, 50):
            out.append(draw(t0, min(t0 + 50, 120)).full.copy())
        return np.concatenate(out)
    first = all_draws([1, 2], spares)
    (layout, bufs), = spares._sets.items()
    second = all_draws([1, 3], spares)
    assert spares._sets[layout] is bufs                                 # reused, given back
    np.testing.assert_array_equal(first, all_draws([1, 2], None))
    np.testing.assert_array_equal(second, all_draws([1, 3], None))
    assert not np.array_equal(first, second)
