"""DFC's options: every one with the original's default, and the original's post-processing.

Meulemans et al. 2021/2022 (``mariacer/strong_dfc``; research note ../shared/research/dfc.md
§2.3 for the option table, §2.2 for ``utils/args.py:post_process_args``). :func:`resolve` turns a
partial option dict into the full one the rule runs with (copies of -1 values, the clips and the
forced settings); :func:`dynamics` builds one phase's controller settings from it.
"""
from __future__ import annotations

from simkit.dynamics.controller import Dynamics
from simkit.errors import UserError

# Every option with the original's default (research note §2.3); -1 means "copy" (see resolve).
DEFAULTS = {
    "single_phase": False, "strong_feedback": False, "error_as_loss_grad": False,
    "target_stepsize": 0.001, "learning_rule": "nonlinear_difference", "ss": False, "ssa": False,
    "dt_di": 0.1, "tmax_di": 10, "time_constant_ratio": 0.2, "apical_time_constant": -1.0,
    "alpha_di": 0.001, "k_p": 0.0, "proactive_controller": False, "inst_transmission": False,
    "inst_system_dynamics": False, "noisy_dynamics": False, "low_pass_filter_noise": False,
    "sigma": 0.08, "sigma_output": -1.0, "tau_noise": 0.8, "tau_f": 0.9,
    "dt_di_fb": -1.0, "tmax_di_fb": -1, "time_constant_ratio_fb": -1.0,
    "apical_time_constant_fb": -1.0, "alpha_di_fb": 0.5, "k_p_fb": -1.0,
    "inst_transmission_fb": False, "sigma_fb": -1.0, "sigma_output_fb": -1.0,
    "lr_fb": 0.1, "lr_fb_init": None, "optimizer_fb": "SGD", "momentum_fb": 0.0,
    "weight_decay_fb": 0.01, "adam_beta1_fb": 0.99, "adam_beta2_fb": 0.99, "adam_epsilon_fb": 1e-8,
    "clip_grad_norm": -1.0, "init_fb_epochs": 1, "extra_fb_epochs": 0, "scaling_fb_updates": False,
    "initialization_fb": "xavier_normal", "sigma_init": 0.0, "freeze_fb_weights": False,
    "freeze_fb_weights_output": False, "pretrain_without_controller": False,
    "use_bp_updates": False, "diagnostics": False, "fb_schedule": None, "kernel": "auto",
    "classification": True, "low_pass_filter_u": False, "include_only_converged_samples": False,
    "use_jacobian_as_fb": False, "epsilon_di": 0.5,
    "noise_stream": "counter",      # simkit's: counter (simkit.kernels.gauss) | numpy (stops <= 11)
    "highpass_start": "first",      # single phase's low pass of u: first (original) | zero (< 12-07)
}


def resolve(opts: dict) -> dict:
    """Defaults plus ``opts``, with the original's post-processing (copies of -1/None values)."""
    unknown = sorted(set(opts) - set(DEFAULTS))
    if unknown:
        raise UserError(f"unknown dfc option(s) {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
    o = {**DEFAULTS, **opts}
    if o["error_as_loss_grad"] and not o["strong_feedback"]:
        raise UserError("--error_as_loss_grad needs --strong_feedback (as in the original)")
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
        if o["noisy_dynamics"]:
            raise UserError("--use_jacobian_as_fb with --noisy_dynamics is not available (the "
                            "original crashes on it); drop one of them")
        o.update(freeze_fb_weights=True, init_fb_epochs=0, extra_fb_epochs=0)
    if o["freeze_fb_weights"]:
        o["initialization_fb"] = "weight_product"
    if o["noise_stream"] not in ("counter", "numpy"):
        raise UserError(f"noise_stream must be counter or numpy, got {o['noise_stream']!r}")
    if o["highpass_start"] not in ("first", "zero"):
        raise UserError(f"highpass_start must be first or zero, got {o['highpass_start']!r}")
    if o["kernel"] not in ("auto", "numba", "vectorised"):
        raise UserError(f"kernel must be auto, numba or vectorised, got {o['kernel']!r}")
    if not o["tau_f"] < 1:
        raise UserError(f"--tau_f must be < 1, got {o['tau_f']}")
    o["tau_noise"] = min(o["tau_noise"], o["tau_f"])                # the original clips these two
    o["time_constant_ratio"] = min(o["time_constant_ratio"], o["tau_f"])
    if o["single_phase"]:
        if o["ssa"]:
            raise UserError("--ssa is not available in the single phase (nor in the original); "
                            "use simkit run_dfc --ssa")
        o["noisy_dynamics"] = not o["use_jacobian_as_fb"]
    return o


def dynamics(o, fb=False, error="mse", noisy=False) -> Dynamics:
    """The forward (``fb=False``) or feedback-phase controller settings from resolved options."""
    s = "_fb" if fb else ""
    noise = "none"
    if noisy:
        noise = "ou" if (o["low_pass_filter_noise"] or o["single_phase"]) else "white"
    tau_A = o["apical_time_constant" + s]
    if o["single_phase"]:                                           # inst_apical_dynamics
        tau_A = o["dt_di" + s]
    return Dynamics(dt=o["dt_di" + s], T=int(o["tmax_di" + s]), tau_v=o["time_constant_ratio" + s],
                    tau_A=tau_A, alpha=o["alpha_di" + s], k_p=o["k_p" + s],
                    proactive=o["proactive_controller"],
                    inst_transmission=o["inst_transmission" + s],
                    inst_system=o["inst_system_dynamics"], noise=noise, sigma=o["sigma" + s],
                    sigma_out=o["sigma_output" + s], tau_noise=o["tau_noise"], error=error,
                    lp_u=o["dt_di" + s] / o["tau_f"] if o["low_pass_filter_u"] else 0.0,
                    ).check("--dt_di" + s)
