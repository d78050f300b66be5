"""DFC's options: a typed record with the original's defaults, and the original's post-processing.

Meulemans et al. 2021/2022 (``mariacer/strong_dfc``; research note ../shared/research/dfc.md
§2.3 for the option table, §2.2 for ``utils/args.py:post_process_args``). :class:`DFCOptions`
holds every option with its default, its unit and the strong_dfc flag that sets it (each field's
``metadata``: ``unit``, ``flag``, ``doc``); run.json stores the options as a JSON dict, which
:meth:`DFCOptions.from_dict` reads back. :meth:`DFCOptions.resolved` applies the post-processing
(copies of -1 values, the clips and the forced settings); :func:`dynamics` builds one phase's
controller settings from resolved options.

Units: times are in units of the controller's time constant :math:`\\tau_u = 1`, as in the
original; ``tmax`` counts stored time points; "1" marks a dimensionless number. -1 (or None)
means "copy another option" (:meth:`DFCOptions.resolved`).
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field

from simkit.dynamics.controller import Dynamics
from simkit.errors import UserError


def _opt(default, unit, doc, flag=""):
    """A field with its default, unit, documentation and strong_dfc flag ("": ``--<name>``)."""
    return field(default=default, metadata={"unit": unit, "doc": doc, "flag": flag})


@dataclass(frozen=True)
class DFCOptions:
    """Every DFC option. Each field's ``metadata`` holds its ``doc``, its ``unit`` and the
    strong_dfc ``flag`` that sets it ("": the run_dfc.py / run_dfc_single_phase.py flag
    ``--<name>``); the comment above each group names the paper's part it belongs to."""

    # ---- which variant
    single_phase: bool = _opt(False, "", "single-phase Strong-DFC",
                              "the script run_dfc_single_phase.py")
    strong_feedback: bool = _opt(False, "", "output target r*_L = y (Strong-DFC)")
    error_as_loss_grad: bool = _opt(False, "", "control error -dL/dr_L (softmax for CE)")
    target_stepsize: float = _opt(0.001, "1", "lambda of the weak target, Eq. (6)")
    learning_rule: str = _opt("nonlinear_difference", "", "the mismatch of Eq. (5): "
                              "nonlinear_difference or voltage_difference")
    ss: bool = _opt(False, "", "DFC-SS: update from the steady state only")
    ssa: bool = _opt(False, "", "DFC-SSA: linearised steady state, no simulation")
    use_bp_updates: bool = _opt(False, "", "forward weights learn by BP (a debugging aid)")
    # ---- forward-phase dynamics
    dt_di: float = _opt(0.1, "tau_u", "Euler step dt")
    tmax_di: int = _opt(10, "time points", "T, stored time points of a simulation")
    time_constant_ratio: float = _opt(0.2, "tau_u", "tau_v, the somatic time constant")
    apical_time_constant: float = _opt(-1.0, "tau_u", "tau_A (-1: dt_di)")
    alpha_di: float = _opt(0.001, "1", "alpha, the controller's leak, Eq. (4)")
    k_p: float = _opt(0.0, "1", "proportional gain k_p, Eq. (4)")
    proactive_controller: bool = _opt(False, "", "layers receive the new u")
    inst_transmission: bool = _opt(False, "", "layers update in order from the new r_{l-1}")
    inst_system_dynamics: bool = _opt(False, "", "v = v_fb + v_ff at once")
    noisy_dynamics: bool = _opt(False, "", "noise in the forward phase too")
    low_pass_filter_noise: bool = _opt(False, "", "Ornstein-Uhlenbeck noise, not white")
    sigma: float = _opt(0.08, "1", "noise amplitude of the hidden layers")
    sigma_output: float = _opt(-1.0, "1", "noise amplitude of the output layer (-1: sigma)")
    tau_noise: float = _opt(0.8, "tau_u", "OU noise time constant (clipped to tau_f)")
    tau_f: float = _opt(0.9, "tau_u", "low-pass time constant of u (must be < 1)")
    low_pass_filter_u: bool = _opt(False, "", "layers receive an EMA of u, factor dt/tau_f")
    # ---- feedback-phase dynamics (-1: the forward value)
    dt_di_fb: float = _opt(-1.0, "tau_u", "Euler step of the feedback phase")
    tmax_di_fb: int = _opt(-1, "time points", "T of the feedback phase")
    time_constant_ratio_fb: float = _opt(-1.0, "tau_u", "tau_v of the feedback phase")
    apical_time_constant_fb: float = _opt(-1.0, "tau_u", "tau_A of the feedback phase "
                                          "(-1: dt_di_fb; run_dfc.py only)")
    alpha_di_fb: float = _opt(0.5, "1", "alpha of the feedback phase")
    k_p_fb: float = _opt(-1.0, "1", "k_p of the feedback phase")
    inst_transmission_fb: bool = _opt(False, "", "inst_transmission of the feedback phase")
    sigma_fb: float = _opt(-1.0, "1", "hidden noise amplitude of the feedback phase")
    sigma_output_fb: float = _opt(-1.0, "1", "output noise amplitude of the feedback phase "
                                  "(-1: sigma_fb)")
    # ---- feedback learning
    lr_fb: float | list = _opt(0.1, "1", "feedback learning rate (float or per layer)")  # noqa: RUF009
    lr_fb_init: float | list | None = _opt(None, "1", "pre-training learning rate (None: lr_fb)")  # noqa: RUF009
    optimizer_fb: str = _opt("SGD", "", "SGD, RMSprop or Adam", "--optimizer_fb/--optimizer")
    momentum_fb: float = _opt(0.0, "1", "SGD momentum", "--momentum_fb/--momentum")
    weight_decay_fb: float = _opt(0.01, "1", "weight decay on Q")
    adam_beta1_fb: float = _opt(0.99, "1", "Adam beta1 of the feedback optimiser")
    adam_beta2_fb: float = _opt(0.99, "1", "Adam beta2 of the feedback optimiser")
    adam_epsilon_fb: float | list = _opt(1e-8, "1", "Adam/RMSprop epsilon (float or per layer)")  # noqa: RUF009
    clip_grad_norm: float = _opt(-1.0, "1", "per-layer norm clip of Q's update (-1: off)")
    init_fb_epochs: int = _opt(1, "epochs", "feedback pre-training epochs before epoch 1")
    extra_fb_epochs: int = _opt(0, "epochs", "more sleep epochs per epoch (two-phase)")
    scaling_fb_updates: bool = _opt(False, "", "scale Eq. (13) per layer by k_l")
    initialization_fb: str = _opt("xavier_normal", "", "initial Q (xavier: xavier_uniform)")
    sigma_init: float = _opt(0.0, "1", "noise on the weight_product initialisation")
    freeze_fb_weights: bool = _opt(False, "", "Q does not learn")
    freeze_fb_weights_output: bool = _opt(False, "", "Q_L does not learn")
    pretrain_without_controller: bool = _opt(False, "", "pre-training targets r-_L")
    fb_schedule: dict | None = _opt(None, "", "{'batch_size': B, 'max_batches': n} of the "  # noqa: RUF009
                                    "feedback epochs", "--batch_size/--test")
    # ---- diagnostics and variants no published command uses
    diagnostics: bool = _opt(False, "", "per-epoch diagnostics in metrics.csv", "any --save_*")
    classification: bool = _opt(True, "", "the loss is cross-entropy", "--dataset")
    include_only_converged_samples: bool = _opt(False, "", "drop non-converged samples")
    epsilon_di: float = _opt(0.5, "1", "convergence threshold of the output loss")
    use_jacobian_as_fb: bool = _opt(False, "", "J(t)^T stands in for Q")
    # ---- simkit's own
    kernel: str = _opt("auto", "", "Euler loop: auto, numba or vectorised "
                       "(simkit.rules.dfc_dispatch)", "none (run.json's rule_opts)")
    noise_stream: str = _opt("counter", "", "normals: counter (simkit.kernels.gauss) or numpy "
                             "(NumPy's generator)", "--noise_stream (simkit)")
    highpass_start: str = _opt("first", "", "single phase's low pass of u starts at the first "
                               "control (the original's) or at zero", "--highpass_start (simkit)")

    @classmethod
    def from_dict(cls, opts: dict) -> DFCOptions:
        """The options named in ``opts`` (run.json's ``rule_opts``), defaults for the others."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(opts) - set(names))
        if unknown:
            hints = [f"{k} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(k, names, 1))
                     else k for k in unknown]
            raise UserError(f"unknown DFC option(s) {', '.join(hints)}; the options are the "
                            "fields of simkit.rules.dfc_options.DFCOptions")
        return cls(**opts)

    def to_dict(self) -> dict:
        """Every option as a JSON-ready dict (:meth:`from_dict` reads it back)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def resolved(self) -> DFCOptions:
        """The original's post-processing: copies of -1/None values, clips, forced settings."""
        self.check()
        o = self.to_dict()
        if o["strong_feedback"]:
            o["error_as_loss_grad"] = True
        for k in ("dt_di", "tmax_di", "time_constant_ratio", "k_p", "sigma"):
            if o[k + "_fb"] in (-1, -1.0, None):
                o[k + "_fb"] = o[k]
        o["inst_transmission_fb"] = o["inst_transmission_fb"] or False
        if o["sigma_output"] < 0:
            o["sigma_output"] = o["sigma"]
        if o["sigma_output_fb"] < 0:
            o["sigma_output_fb"] = o["sigma_fb"]
        if o["apical_time_constant"] < 0:
            o["apical_time_constant"] = o["dt_di"]
        if o["apical_time_constant_fb"] < 0:
            o["apical_time_constant_fb"] = o["dt_di_fb"]
        if o["lr_fb_init"] is None:
            o["lr_fb_init"] = o["lr_fb"]
        if o["use_jacobian_as_fb"]:
            o.update(freeze_fb_weights=True, init_fb_epochs=0, extra_fb_epochs=0)
        if o["freeze_fb_weights"]:
            o["initialization_fb"] = "weight_product"
        o["tau_noise"] = min(o["tau_noise"], o["tau_f"])            # the original clips these two
        o["time_constant_ratio"] = min(o["time_constant_ratio"], o["tau_f"])
        if o["single_phase"]:
            o["noisy_dynamics"] = not o["use_jacobian_as_fb"]
        return DFCOptions(**o)

    def check(self):
        """Refuse the combinations the original refuses or crashes on, and unknown choices."""
        if self.error_as_loss_grad and not self.strong_feedback:
            raise UserError("--error_as_loss_grad needs --strong_feedback (as in the original)")
        if self.use_jacobian_as_fb and self.noisy_dynamics:
            raise UserError("--use_jacobian_as_fb with --noisy_dynamics is not available (the "
                            "original crashes on it); drop one of them")
        for name, allowed in (("noise_stream", ("counter", "numpy")),
                              ("highpass_start", ("first", "zero")),
                              ("kernel", ("auto", "numba", "vectorised"))):
            if getattr(self, name) not in allowed:
                raise UserError(f"{name} must be {' or '.join(allowed)}, got "
                                f"{getattr(self, name)!r}")
        if not self.tau_f < 1:
            raise UserError(f"--tau_f must be < 1, got {self.tau_f}")
        if self.single_phase and self.ssa:
            raise UserError("--ssa is not available in the single phase (nor in the original); "
                            "use simkit run_dfc --ssa")


DEFAULT = DFCOptions()


def help_text(name: str) -> str:
    """The ``--help`` line of option ``name``: its meaning and unit (times in units of tau_u)."""
    meta = DFCOptions.__dataclass_fields__[name].metadata
    unit = "" if meta["unit"] in ("", "1") else f" [{meta['unit']}]"
    return meta["doc"] + unit


def resolve(opts: dict) -> DFCOptions:
    """Defaults plus ``opts`` (a dict, as run.json stores it), post-processed."""
    return DFCOptions.from_dict(opts).resolved()


def dynamics(o: DFCOptions, fb=False, error="mse", noisy=False) -> Dynamics:
    """The forward (``fb=False``) or feedback-phase controller settings from resolved options."""
    s = "_fb" if fb else ""

    def get(name):
        return getattr(o, name + s)
    noise = "none"
    if noisy:
        noise = "ou" if (o.low_pass_filter_noise or o.single_phase) else "white"
    tau_A = get("apical_time_constant")
    if o.single_phase:                                               # inst_apical_dynamics
        tau_A = get("dt_di")
    return Dynamics(dt=get("dt_di"), T=int(get("tmax_di")), tau_v=get("time_constant_ratio"),
                    tau_A=tau_A, alpha=get("alpha_di"), k_p=get("k_p"),
                    proactive=o.proactive_controller, inst_transmission=get("inst_transmission"),
                    inst_system=o.inst_system_dynamics, noise=noise, sigma=get("sigma"),
                    sigma_out=get("sigma_output"), tau_noise=o.tau_noise, error=error,
                    lp_u=get("dt_di") / o.tau_f if o.low_pass_filter_u else 0.0,
                    ).check("--dt_di" + s)
