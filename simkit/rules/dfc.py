r"""Deep Feedback Control (DFC) and Strong-DFC: the learning rule.

Meulemans, Tristany Farinha, Garcia Ordonez, Vilimelis Aceituno, Sacramento, Grewe (2021),
"Credit Assignment in Neural Networks through Deep Feedback Control", NeurIPS 2021,
arXiv 2106.07887; Meulemans, Tristany Farinha, Cervera, Sacramento, Grewe (2022), "Minimizing
Control for Credit Assignment with Strong Feedback", ICML 2022, arXiv 2204.07249. Original code:
``mariacer/strong_dfc`` (``dfc/``); written from the research note, not from that code.

For every minibatch a PI controller (:mod:`simkit.dynamics.controller`) drives the network from
its feed-forward state towards an output target:

.. math::

    r^*_L = r^-_L - \lambda\,\partial_{r_L}(B\bar{\mathcal L})\ \text{(weak, DFC Eq. (6))}, \qquad
    r^*_L = y\ \text{(strong feedback)}

and the forward weights learn from the time average of the somatic-basal mismatch
(DFC Eq. (5), ``nonlinear_difference``; ``voltage_difference`` uses :math:`v - v_{ff}`):

.. math::

    g_{W_l} = -\frac{2}{BT}\sum_{t=0}^{T-1}\big(\phi(v_l[t]) - \phi(v_{ff,l}[t])\big)^\top r_{l-1}[t],
    \qquad g_{b_l} = -\frac{2}{BT}\sum_{t}\sum_{n}\big(\phi(v_l) - \phi(v_{ff,l})\big)_n      \quad (5)

``ss`` (DFC-SS) uses only the steady state :math:`t = T-1`, ``ssa`` (DFC-SSA) the linearised
steady state without a simulation (:func:`~simkit.rules.dfc_feedback.ssa_state`); both
update by
:math:`\delta_l = \phi(v_{ff,l}' + \Delta v_l) - \phi(v_{ff,l}')`,
:math:`v_{ff,l}' = W_l r_{l-1}^{ss} + b_l`, :math:`g_{W_l} = -\frac2B \delta_l^\top r^{ss}_{l-1}`.
Feedback weights learn in noisy phases (:mod:`simkit.rules.dfc_feedback`): two-phase DFC runs one
"sleep" epoch per epoch (plus ``extra_fb_epochs``) in :meth:`DFC.begin_epoch`; single-phase
Strong-DFC learns :math:`Q` from the same noisy simulation in every :meth:`DFC.grads`.
``init_fb_epochs`` of feedback-only pre-training run before epoch 1.

Options no published command uses, on the readable loop (:mod:`simkit.dynamics.controller`):
``low_pass_filter_u`` (the layers receive an EMA of u with factor dt/tau_f),
``use_jacobian_as_fb`` (:math:`\bar Q := J(t)^\top` per sample at every step, and in DFC-SSA;
feedback learning off, as in the original; with ``noisy_dynamics`` the original crashes, so it is
refused), ``include_only_converged_samples`` (forward phase: samples that fail the original's
convergence test, :meth:`DFC.converged`, are set back to their feed-forward state, so their terms
leave the update; the divisor stays the full batch). Every forward-phase simulation counts its
converged and diverged samples into the epoch's ``converged`` / ``diverged`` metrics.

Options, their defaults, units and flags, and the original's post-processing:
:class:`simkit.rules.dfc_options.DFCOptions`; which Euler loop runs a simulation and the keys
of its noise: :mod:`simkit.rules.dfc_dispatch`; the updates (Eqs. (5), (6)):
:mod:`simkit.rules.dfc_updates`; the diagnostics: :mod:`simkit.rules.dfc_diagnostics`.

Symbols: ``W[l]`` (n_l, n_{l-1}), ``Q[l]`` (n_l, n_L), ``u`` (B, n_L), :math:`\lambda` =
``target_stepsize``, :math:`\alpha` = ``alpha_di``, :math:`k_p`, :math:`\tau_v` =
``time_constant_ratio``, :math:`\tau_A` = ``apical_time_constant``, T = ``tmax_di`` time points.

Deviations from the original (research note §4.1): no autograd anywhere; :math:`W_1x` computed
once and updates accumulated online; an unstable Euler step is refused, not clipped; the
``voltage_difference`` sign bug of the steady-state path is fixed (nothing published uses it);
``--save_condition_fb`` with ``init_fb_epochs=0`` does not crash; ``--save_ratio_ff_fb`` records
its ratio (:func:`~simkit.rules.dfc_feedback.ratio_ff_fb`; the original's writes to DataFrames it
never creates); the epoch metric ``lu_loss`` (the original's ``--save_lu_loss``, always recorded),
:math:`\sum_b \|\bar Q u_b\|^2 / (N\,n_{samples})` over the epoch, is not divided once more by the
batch size as the original's is (it sums per-batch means and divides by the samples); the noise
comes from simkit's counter-based stream (:func:`~simkit.dynamics.noise.noise_source`), keyed by
(seed, epoch, simulation, phase), not from torch's generator, so it is the same on every backend
and after a resume. Kept for parity: the leak on the total u, the 0.01 floor on sigma, the
single phase's forward tau_v in the k_l scaling and forward dt in the high-pass; the diagnostics'
J at the feed-forward state.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from simkit.dynamics.controller import (
    Learning,
    controller_inputs,
    feedback_input,
    jacobian_blocks,
    sample_loss,
    to_feedforward,
)
from simkit.dynamics.noise import noise_source
from simkit.errors import NumericalError, UserError
from simkit.kernels.dfc_fast import close_helper
from simkit.kernels.spares import Spares
from simkit.rules import dfc_dispatch as dispatch
from simkit.rules import dfc_feedback as fbk
from simkit.rules.bp import bp_deltas
from simkit.rules.common import grads_from_deltas, output_target
from simkit.rules.dfc_diagnostics import diagnose
from simkit.rules.dfc_options import DFCOptions, dynamics, resolve
from simkit.rules.dfc_updates import continuous_grads, ss_grads

CONVERGED, DIVERGED = 1e-5, 1.0      # the original's thresholds on |e - alpha u| / |r-_L|


class DFC:
    """The DFC / Strong-DFC rule (see the module docstring); ``opts`` name fields of
    :class:`~simkit.rules.dfc_options.DFCOptions` (the rest keep their defaults).

    The rule neither prints nor checks by assertion: it returns its metrics and notes, raises
    :mod:`simkit.errors` exceptions, and hands its progress lines to ``log``. It holds a
    noise-drawing thread: :meth:`close` (or ``with DFC(...) as rule``) shuts it down.
    """

    name = "dfc"
    checkpoint = None        # set by the Trainer: saves the run (after each pre-training epoch)
    log = None               # set by the Trainer: its log, one progress line a call
    last_batch = True        # set by the Trainer: the diagnostics run on each epoch's last
                             # minibatch only, as the original's (they cost ~4% of a batch)
    # run.json's summary: the original's keys (research note §1.10) -> the last epoch's value
    # of these whole-net metrics (absent when the run did not record them)
    summary_metrics = {"gn_condition": "condition_2", "gn_condition_init": "condition_2_init",
                       "loss_lu": "lu_loss", "dist_to_ndi": "dist_to_ndi"}

    def __init__(self, **opts):
        self.o: DFCOptions = resolve(opts)
        o = self.o
        # -dL/dr_L: t - softmax(r_L) for classification (cross-entropy), t - r_L for MSE tasks
        self.error = "ce" if o.error_as_loss_grad and o.classification else "mse"
        self.dyn = dynamics(o, error=self.error, noisy=o.noisy_dynamics)
        self.dyn_fb = dynamics(o, fb=True, error=self.error, noisy=True)
        self.epoch, self.counter, self.pretrained = 0, 0, 0
        self.last, self.fb_seconds, self.lu_sum, self.lu_n = {}, None, 0.0, 0
        self.condition_init = None     # condition 2 after the last pre-training epoch
        self.data, self.pool = None, None
        self.noise_spares = Spares()            # noise buffers kept for the next simulation
        self.train_fb = not o.freeze_fb_weights
        self.conv = np.zeros(3)          # converged, diverged, simulated samples this epoch

    # ----------------------------------------------------------------------------- set-up
    def setup(self, net, rng, train=None, **_):
        """Draw Q from the rule's stream; ``train`` is the run's training split (sleep epochs)."""
        self.bk, self.net = net.bk, net
        if train is not None:
            self.data = fbk.SplitInputs(net.bk, train)
        o = self.o
        self.Q = [net.bk.asarray(q) for q in fbk.init_Q(rng, net, o.initialization_fb,
                                                        o.sigma_init)]
        self.noise_seed = int(rng.integers(2 ** 62))
        self.opt_fb = fbk.make_fb_optimizer(net.bk, self.Q, o, o.lr_fb)
        self.opt_fb_init = fbk.make_fb_optimizer(net.bk, self.Q, o, o.lr_fb_init)

    def noise(self, B, N, phase, steps, counter=None):
        """:func:`~simkit.dynamics.noise.noise_source` for one simulation of ``steps`` Euler
        steps of B samples and N neurons, seeded by
        :func:`~simkit.rules.dfc_dispatch.simulation_seed`, so a resumed run draws the same
        numbers. ``counter``: replay an earlier simulation's draws (default: the next one)."""
        if N != sum(self.net.sizes[1:]):
            raise UserError(f"DFC noise for {N} neurons asked of a net with "
                            f"{sum(self.net.sizes[1:])}")
        if counter is None:
            counter = self.counter
            self.counter += 1
        if self.pool is None:
            self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="simkit-dfc-noise")
        key = dispatch.simulation_seed(self.noise_seed, self.epoch, counter, phase)
        return noise_source(self.bk, key, B, self.net.sizes[1:], steps, self.o.noise_stream,
                            self.pool, np.dtype(self.net.W[0].dtype), self.noise_spares)

    def close(self):
        """Shut the noise and summing threads down (a later simulation starts new ones)."""
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None
        close_helper()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def run(self, cache, r_target, dyn, learn, phase):
        """Simulate the controller on one minibatch; returns the final state. In the forward
        phase (``phase`` 0) the samples' convergence is counted (:meth:`converged`); with
        ``include_only_converged_samples`` the others are left out of the sums (the simulation
        runs again on the same noise with their terms masked) and set back to the feed-forward
        state, as the original resets them."""
        net = self.net
        P = controller_inputs(net, self.Q, cache, r_target, self.o.use_jacobian_as_fb)
        key = None
        if dyn.noise != "none":
            key, self.counter = self.counter, self.counter + 1
        st = self.simulate(P, cache, dyn, learn, phase, key)
        if phase == 0:
            ok = self.converged(cache, r_target, dyn, st)
            if self.o.include_only_converged_samples and not bool(ok.all()):
                if learn.fw or learn.fb:
                    P["mask"] = ok[:, None].astype(cache.h[0].dtype)
                    st = self.simulate(P, cache, dyn, learn, phase, key)
                to_feedforward(self.bk.xp, st, ok, cache)
        return st

    def simulate(self, P, cache, dyn, learn, phase, key):
        """One run of the Euler loop that :func:`~simkit.rules.dfc_dispatch.pick_loop` picks;
        ``key``: the noise's simulation number (None: no noise)."""
        net, xp, o = self.net, self.bk.xp, self.o
        x = cache.h[0]
        noise = None if key is None else \
            self.noise(x.shape[0], sum(net.sizes[1:]), phase, dyn.T - 1, counter=key)
        only_reference = dispatch.reference_only(dyn, P, o.include_only_converged_samples)
        loop = dispatch.pick_loop(self.bk, o.kernel, sum(net.sizes[1:]), only_reference)
        st = loop(P, cache.a[1:], cache.h[1:], dyn, learn, noise)
        if not bool(xp.isfinite(st.u).all()):
            raise NumericalError(f"the DFC controller diverged (u is not finite) in epoch "
                                 f"{self.epoch}: J Q + alpha I needs eigenvalues with positive "
                                 "real part; lower the step size or train the feedback weights")
        return st

    def converged(self, cache, r_t, dyn, st):
        r"""The original's per-sample check (research note §1.5): converged if
        :math:`\ell(r^*_L - \alpha u, r_L) / \|r^-_L\| < 10^{-5}` and
        :math:`\ell(r^*_L, r_L) < \epsilon_{di}^2\,\ell(r^*_L, r^-_L)` at the last time point
        (:math:`\ell`: :func:`~simkit.dynamics.controller.sample_loss`); diverged if the ratio
        exceeds 1. Adds to the epoch's ``converged`` / ``diverged`` fractions."""
        xp = self.bk.xp
        r_L = st.r[-1]
        ratio = sample_loss(xp, dyn, r_t - dyn.alpha * st.u, r_L) / \
            xp.sqrt((cache.y ** 2).sum(axis=1))
        shrunk = sample_loss(xp, dyn, r_t, r_L) < \
            self.o.epsilon_di ** 2 * sample_loss(xp, dyn, r_t, cache.y)
        ok = (ratio < CONVERGED) & shrunk
        self.conv += np.array([float(ok.sum()), float((ratio > DIVERGED).sum()), ok.shape[0]])
        return ok

    # ----------------------------------------------------------------------------- forward phase
    def grads(self, net, cache, dL_dy, *, t, loss, idx=None, epoch=0):
        xp, o = self.bk.xp, self.o
        if o.use_bp_updates:
            return grads_from_deltas(net, cache, bp_deltas(net, cache, dL_dy))
        r_t = output_target(xp, cache.y, t, None if o.strong_feedback else o.target_stepsize,
                            dL_dy)                                    # Eq. (6)
        fb = "highpass" if (o.single_phase and self.train_fb) else None
        learn = self.learning(None if o.ss else o.learning_rule, fb)
        if o.ssa:
            st = fbk.ssa_state(xp, net, cache, self.Q, r_t, self.dyn,      # no simulation
                               jacobian_fb=o.use_jacobian_as_fb)
        else:
            st = self.run(cache, r_t, self.dyn, learn, phase=0)
        B = cache.h[0].shape[0]
        g = ss_grads(xp, net, st, cache.h[0], o.learning_rule) if o.ss or o.ssa \
            else continuous_grads(net, st, B, self.dyn.T)
        if fb:
            self.step_feedback(st, self.opt_fb, B, self.dyn, self.o.time_constant_ratio)
        self.last = {"u_norm": float(xp.sqrt((st.u ** 2).sum(axis=1)).mean())}
        J = jacobian_blocks(xp, net.W, net.phi, st.v, st.r) if o.use_jacobian_as_fb else None
        fb_in = feedback_input({"Q": self.Q}, st.u, J)                    # Q-bar u per layer
        lu = sum(float((a ** 2).sum()) for a in fb_in) / (B * sum(net.sizes[1:]))
        self.lu_sum, self.lu_n = self.lu_sum + lu * B, self.lu_n + B     # surrogate H (Strong-DFC)
        if o.diagnostics and self.last_batch:
            self.last.update(self.diagnose(net, cache, dL_dy, r_t, g, st, fb_in))
        return g

    def learning(self, fw, fb) -> Learning:
        r"""What a simulation accumulates; the single phase's high pass (``fb="highpass"``) has
        :math:`a_u = \Delta t / \tau_f` with the forward dt (the original's quirk) and starts
        as ``highpass_start`` says."""
        return Learning(fw=fw, fb=fb, a_u=self.dyn.dt / self.o.tau_f,
                        lp_start=self.o.highpass_start)

    def step_feedback(self, st, opt, B, dyn, tau_v):
        """Eq. (13) of :mod:`simkit.rules.dfc_feedback` on one simulation's sums."""
        L = self.net.L
        scales = fbk.fb_scales([dyn.sigma] * (L - 1) + [dyn.sigma_out], L,
                               self.o.scaling_fb_updates, tau_v, self.o.tau_noise)
        fbk.step_Q(self.bk, opt, self.Q, st.C, scales, dyn.T, B, self.o.clip_grad_norm,
                   train_output=not self.o.freeze_fb_weights_output)

    # ----------------------------------------------------------------------------- feedback phase
    def feedback_batch(self, x, t, init):
        """One noisy feedback-learning simulation on a minibatch (sleep phase / pre-training)."""
        cache = self.net.forward(x)
        o, dyn = self.o, self.dyn_fb
        target = t if (o.strong_feedback and not o.pretrain_without_controller) \
            else cache.y
        if o.single_phase:        # quirks kept: forward dt in a_u, forward tau_v in k_l
            learn, tau_v = self.learning(None, "highpass"), o.time_constant_ratio
        else:
            learn, tau_v = self.learning(None, "plain"), dyn.tau_v
        st = self.run(cache, target, dyn, learn, phase=1)
        self.step_feedback(st, self.opt_fb_init if init else self.opt_fb, x.shape[0], dyn, tau_v)
        return cache

    def feedback_epoch(self, init=False):
        """A full pass of feedback learning over the run's training split; returns the last
        minibatch's feed-forward cache."""
        data, bs, max_b = self.training_data()
        order = np.random.default_rng(dispatch.order_key(self.noise_seed, self.epoch)) \
            .permutation(len(data))
        starts, cache = list(range(0, len(data), bs)), None
        for i in starts[:max_b] if max_b else starts:
            cache = self.feedback_batch(*data.batch(order[i:i + bs]), init)
        return cache

    def training_data(self):
        """The training inputs of the feedback epochs, and their batch size and batch cap."""
        fs = self.o.fb_schedule or {}
        if self.data is None or "batch_size" not in fs:
            raise UserError("DFC feedback epochs need the training data and the option "
                            "fb_schedule={'batch_size': B}: build the rule with "
                            "simkit.training.config.build (simkit run_dfc does)")
        return self.data, int(fs["batch_size"]), int(fs.get("max_batches", 0))

    def begin_epoch(self, epoch):
        """Pre-training before epoch 1, then the two-phase schedule's sleep epochs (timed into
        the ``fb_seconds`` metric; the Trainer's epoch time covers the forward phase only)."""
        self.epoch, self.counter = epoch, 0
        o, t0 = self.o, time.perf_counter()
        if not self.train_fb:
            return
        ran = not o.single_phase or self.pretrained < int(o.init_fb_epochs)
        while self.pretrained < int(o.init_fb_epochs):
            self.pretrain_epoch(t0)
        self.epoch = epoch
        if not o.single_phase:
            n_sleep = 1 + (int(o.extra_fb_epochs) if epoch > 1 else 0)
            for k in range(n_sleep):
                self.counter = dispatch.sleep_start(k)
                self.feedback_epoch()
        self.counter = 0
        self.fb_seconds = time.perf_counter() - t0 if ran else None    # None: no feedback phase

    def pretrain_epoch(self, t0):
        """One feedback pre-training epoch; its line goes to ``log``, then the run is saved
        (``checkpoint``) so that a resumed run goes on from here."""
        o = self.o
        self.epoch, self.counter = dispatch.pretrain_epoch(self.pretrained), 0
        cache = self.feedback_epoch(init=True)
        self.pretrained += 1
        cond = ""
        if o.diagnostics:                  # the original's gn_condition_init (--save_condition_fb)
            self.condition_init = fbk.condition_two(self.bk.xp, fbk.jacobians(
                self.bk.xp, self.net, cache), self.Q)
            cond = f", condition 2: {self.condition_init:.3f}"
        if self.log is not None:
            self.log(f"feedback pre-training epoch {self.pretrained}/{o.init_fb_epochs} "
                     f"done ({time.perf_counter() - t0:.1f} s{cond})")
        if self.checkpoint is not None:
            self.checkpoint()

    # ----------------------------------------------------------------------------- diagnostics
    def diagnose(self, net, cache, dL_dy, r_t, g, st, fb_in) -> dict:
        """The per-epoch diagnostics (:func:`simkit.rules.dfc_diagnostics.diagnose`)."""
        return diagnose(self.bk.xp, net, cache, dL_dy, r_t, g, st, fb_in, self.Q, self.dyn,
                        self.o)

    def epoch_note(self) -> str:
        """For the epoch's line: the feedback phase's seconds, which the epoch's time leaves out."""
        return "" if self.fb_seconds is None else f"+ {self.fb_seconds:.1f} s feedback phase"

    def epoch_metrics(self, net) -> dict:
        out = {"net": {"fb_seconds": self.fb_seconds} if self.fb_seconds is not None else {}}
        if self.condition_init is not None:        # once, in the first epoch after pre-training
            out["net"]["condition_2_init"], self.condition_init = self.condition_init, None
        if self.lu_n:
            out["net"]["lu_loss"] = self.lu_sum / self.lu_n
        self.lu_sum, self.lu_n = 0.0, 0
        if self.conv[2]:
            out["net"]["converged"] = self.conv[0] / self.conv[2]
            out["net"]["diverged"] = self.conv[1] / self.conv[2]
        self.conv = np.zeros(3)
        for k, v in self.last.items():
            if "/" in k:
                name, layer = k.split("/")
                out.setdefault(layer, {})[name] = v
            else:
                out["net"][k] = v
        return out

    # ----------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        """Q, the feedback optimisers, the pre-training count, and the epoch's running state
        (noise key counter, surrogate-loss and convergence sums, sleep seconds) for a checkpoint
        taken inside an epoch."""
        out = {f"Q{l + 1}": self.bk.to_host(q) for l, q in enumerate(self.Q)}
        out["pretrained"] = np.asarray(self.pretrained)
        if self.condition_init is not None:
            out["condition_2_init"] = np.asarray(self.condition_init)
        out["epoch_state"] = np.asarray([self.epoch, self.counter, self.lu_sum, self.lu_n,
                                         -1.0 if self.fb_seconds is None else self.fb_seconds,
                                         *self.conv], dtype=float)
        for name, opt in (("opt_fb", self.opt_fb), ("opt_fb_init", self.opt_fb_init)):
            out.update({f"{name}.{k}": v for k, v in opt.state_dict().items()})
        return out

    def load_state_dict(self, state):
        for l, q in enumerate(self.Q):
            q[...] = self.bk.asarray(state[f"Q{l + 1}"])
        self.pretrained = int(state["pretrained"])
        if "condition_2_init" in state:
            self.condition_init = float(state["condition_2_init"])
        e, c, lu_sum, lu_n, fb_s, *conv = (float(v) for v in state["epoch_state"])
        self.epoch, self.counter, self.lu_sum, self.lu_n = int(e), int(c), lu_sum, int(lu_n)
        self.fb_seconds, self.conv = (None if fb_s < 0 else fb_s), np.asarray(conv)
        for name, opt in (("opt_fb", self.opt_fb), ("opt_fb_init", self.opt_fb_init)):
            p = name + "."
            opt.load_state_dict({k[len(p):]: v for k, v in state.items() if k.startswith(p)})
