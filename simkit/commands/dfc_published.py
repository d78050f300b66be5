"""The published DFC / Strong-DFC commands (REFERENCE.md section 1; the Strong-DFC repository's
README) with the test accuracy each paper reports and the target simkit must reach.

``flags`` are the command lines verbatim, without the script name: ``simkit COMMAND FLAGS``
runs them. The papers report the test accuracy at the epoch of best validation accuracy
(``acc_test_val_best`` in a run's summary).
"""
from __future__ import annotations

from typing import NamedTuple


class Published(NamedTuple):
    command: str            # simkit subcommand (the original's script)
    flags: str              # the published flags, verbatim
    accuracy: float         # the paper's MNIST test accuracy
    target: float           # what a simkit reproduction must reach (the acceptance)


DFC = """--double_precision --epochs=40 --batch_size=32 --clip_grad_norm=1.0
--lr=0.0010924329072635147 --optimizer=Adam --adam_beta1=0.9
--adam_epsilon=5.83238643406511e-07 --dataset=mnist --hidden_activation=tanh
--initialization=xavier_normal --lr_fb=4.348352883654314e-05 --optimizer_fb=Adam
--weight_decay_fb=0.1 --adam_epsilon_fb=3.355535527361205e-05
--target_stepsize=0.013812748252649061 --initialization_fb=xavier_normal
--learning_rule=nonlinear_difference --init_fb_epochs=20
--lr_fb_init=0.0001524121535306385 --proactive_controller --dt_di=0.02 --tmax_di=500
--inst_transmission --time_constant_ratio=0.2 --sigma=0.035483751742735006
--alpha_di=0.0017723664900917734 --k_p=2.0 --apical_time_constant=-1
--dt_di_fb=0.0011421804343878519 --tmax_di_fb=44 --inst_transmission_fb
--time_constant_ratio_fb=0.005870467170683501 --alpha_di_fb=0.39857902933813705
--k_p_fb=0.0713515876863314 --apical_time_constant_fb=0.1404664564483908
--size_hidden=256,256,256"""

STRONG_SINGLE = """--double_precision --epochs=40 --clip_grad_norm=1.0 --lr=0.0003095880739373081
--optimizer="Adam" --adam_beta1=0.9 --adam_epsilon=1.6288767089312233e-05
--dataset="mnist" --target_class_value=0.99 --size_hidden="256,256,256"
--hidden_activation="tanh" --initialization="xavier_normal" --lr_fb=2.0091405897656825e-08
--optimizer_fb="Adam" --weight_decay_fb=0.5 --adam_beta2_fb=0.999
--adam_epsilon_fb=1.1023320392297719e-11 --tau_noise=0.07 --strong_feedback
--error_as_loss_grad --initialization_fb="xavier_normal"
--learning_rule="nonlinear_difference" --init_fb_epochs=1
--lr_fb_init=4.5160347135162454e-07 --scaling_fb_updates --proactive_controller
--tau_f=0.5 --dt_di=0.001 --tmax_di=500 --inst_transmission
--time_constant_ratio=0.009268288409004458 --sigma=0.004278964325349612
--sigma_output=0.029713880264874388 --alpha_di=7.608673370995652e-06 --k_p=2.0
--apical_time_constant=-1 --dt_di_fb=0.0012167769308505587 --tmax_di_fb=500
--inst_transmission_fb --time_constant_ratio_fb=0.014441072404716454
--sigma_fb=2.760795719756352e-05 --sigma_output_fb=1.5149030252289032e-05
--alpha_di_fb=0.016257243484558315 --k_p_fb=0.0028004742554235116 --save_df
--save_condition_fb --noisy_dynamics"""

STRONG_TWO_PHASE = """--double_precision --epochs=40 --clip_grad_norm=1.0 --lr=0.0006560184719951886
--optimizer="Adam" --adam_beta1=0.9 --adam_epsilon=0.00023225688276019436
--dataset="mnist" --target_class_value=0.9 --size_hidden="256,256,256"
--hidden_activation="tanh" --initialization="xavier_normal" --lr_fb=9.776610079269425e-06
--optimizer_fb="Adam" --weight_decay_fb=1e-05 --adam_beta1_fb=0.999 --adam_beta2_fb=0.9
--adam_epsilon_fb=0.0019707791920650247 --ss --tau_noise=0.05 --target_stepsize=0.5
--error_as_loss_grad --initialization_fb="xavier_normal"
--learning_rule="nonlinear_difference" --init_fb_epochs=1
--lr_fb_init=0.0002730319014715041 --proactive_controller --tau_f=0.5 --dt_di=0.001
--tmax_di=500 --inst_transmission --time_constant_ratio=0.03553062335953924 --sigma=0.15
--alpha_di=0.008082122141749502 --k_p=2.0 --apical_time_constant=-1
--dt_di_fb=0.0031943783402810927 --tmax_di_fb=500 --inst_transmission_fb
--time_constant_ratio_fb=0.0072383695016716215 --alpha_di_fb=0.9944618528446518
--k_p_fb=0.0691564739128701 --apical_time_constant_fb=0.12961120842685991
--strong_feedback"""

PUBLISHED = {
    "DFC": Published("run_dfc", DFC, 0.9780, 0.976),
    "Strong-DFC": Published("run_dfc_single_phase", STRONG_SINGLE, 0.9772, 0.975),
    "Strong-DFC 2-phase": Published("run_dfc", STRONG_TWO_PHASE, 0.9775, 0.975),
}


def method_of(config: dict) -> str:
    """Which of PUBLISHED a run's stored configuration is (by its rule options)."""
    o = config.get("rule_opts") or {}
    if o.get("single_phase"):
        return "Strong-DFC"
    return "Strong-DFC 2-phase" if o.get("strong_feedback") else "DFC"
