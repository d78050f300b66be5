"""``simkit run_bp``: the strong_dfc ``run_bp.py`` command line, verbatim, with its defaults.

Meulemans et al. 2021/2022 (``mariacer/strong_dfc``). The flags and defaults below are that
script's (see ../shared/research/dfc.md §2.3), not simkit's: SGD with lr 0.1, Adam betas
0.99/0.99 unless given, 2 epochs, a 5-unit linear hidden layer, float32 unless
``--double_precision``, batch 128, a seeded 55,000/5,000 train/validation split of MNIST.
What the original does, simkit does:

* MNIST is scaled to [0, 1] and standardised with (x - 0.1307)/0.3081; Fashion-MNIST only scaled.
* The output layer is linear (logits) and the loss softmax cross-entropy; with
  ``--target_class_value c < 1`` the targets are c for the true class and (1-c)/9 elsewhere.
* ``--clip_grad_norm`` clips each layer's [W, b] separately.
* Test accuracy comes from a plain forward pass after each epoch; the summary gives the last
  test accuracy and the test accuracy at the epoch of best validation accuracy.

Flags of the original that only steer its logging or plotting (``--no_plots``,
``--loglevel_info``, ``--deterministic_run``, ``--save_checkpoints``, ``--checkpoint_interval``,
``--epoch_summary_interval``) are accepted and have no effect: simkit always writes its run
directory and a checkpoint each epoch.
"""
from __future__ import annotations

from pathlib import Path

from simkit.commands.options import SWITCH, add_table, simkit_group
from simkit.commands.runner import (
    add_checkpoint_option,
    command_flags,
    default_out_dir,
    execute,
    parse_number_or_list,
    parse_sizes,
)
from simkit.errors import UserError
from simkit.training.config import resolve_config

PAPER_COMMAND = "strong_dfc run_bp.py (Meulemans et al. 2021/2022): the backprop baseline"
DATASETS = {  # the original's name -> (simkit data set, standardisation)
    "mnist": ("mnist", "mnist"),
    "mnist_autoencoder": ("mnist", "mnist"),      # targets = the standardised images, MSE
    "fashion_mnist": ("fashion_mnist", "none"),
    "cifar10": ("cifar10", "none"),
    "student_teacher": ("student_teacher", "none"),
}
ACTIVATIONS = ("linear", "tanh", "relu", "leakyrelu", "sigmoid")
INITIALIZATIONS = ("orthogonal", "xavier", "xavier_normal")
NO_EFFECT = "accepted; no effect in simkit"
#: The options shared by the strong_dfc scripts (run_bp.py, run_dfc.py, run_dfc_single_phase.py):
#: the original's flags, defaults and meanings (simkit's notes after a semicolon).
DFC_COMMON = (
    (("--out_dir", "--out-dir"), None, str,
     "run directory (default: runs/DATE-TIME_COMMAND_DATASET_sSEED)"),
    ("--no_cuda", False, SWITCH, "do not use a GPU (simkit: the numba backend unless --backend)"),
    ("--random_seed", 42, int, "seed of the weights, the minibatch order and the noise"),
    ("--double_precision", False, SWITCH, "compute in float64 instead of float32"),
    ("--test", False, SWITCH, "a quick check: 1 epoch of 2 batches (and at most one feedback "
                              "epoch of each kind)"),
    ("--no_plots", False, SWITCH, f"no plots; {NO_EFFECT}"),
    ("--loglevel_info", False, SWITCH, f"less console output; {NO_EFFECT}"),
    ("--deterministic_run", False, SWITCH, f"deterministic cuDNN; {NO_EFFECT} (always exact)"),
    ("--save_checkpoints", False, SWITCH, f"store the networks; {NO_EFFECT} (it checkpoints "
                                          "every epoch)"),
    ("--checkpoint_interval", "20", str, f"epochs between stored networks; {NO_EFFECT}"),
    ("--epoch_summary_interval", -1, int, f"epochs between summary files; {NO_EFFECT}"),
    ("--pretrained_net_dir", None, str, "a trained network to start from; not supported (use "
                                        "--resume on a run directory)"),
    ("--epochs", 2, int, "training epochs"),
    ("--batch_size", 128, int, "training minibatch size"),
    ("--clip_grad_norm", -1.0, float, "clip each layer's update [W, b] to this norm (-1: off)"),
    ("--min_acc", 0.0, float, "stop after epoch 4 if its train accuracy is below this (0: never)"),
    ("--lr", "0.1", str, "learning rate of the forward weights: a float, or one per layer as "
                         "[a,b,...] (no spaces)"),
    ("--optimizer", "SGD", ("SGD", "RMSprop", "Adam"), "optimiser of the forward weights"),
    ("--momentum", 0.0, float, "momentum of SGD or RMSprop (forward weights)"),
    ("--weight_decay", 0.0, float, "weight decay of the forward weights"),
    ("--adam_beta1", 0.99, float, "Adam beta1 (forward weights)"),
    ("--adam_beta2", 0.99, float, "Adam beta2 (forward weights)"),
    ("--adam_epsilon", "1e-8", str, "Adam/RMSprop epsilon (forward weights): a float, or one per "
                                    "layer as [a,b,...]"),
    ("--dataset", "mnist", tuple(DATASETS), "data set"),
    ("--no_val_set", False, SWITCH, "no validation split: train on all training samples"),
    ("--target_class_value", 1.0, float, "target of the true class: 1 is one-hot, below 1 soft "
                                         "targets ((1-c)/9 elsewhere)"),
    ("--teacher_num_train", 1000, int, "student_teacher: training samples"),
    ("--teacher_num_test", 1000, int, "student_teacher: test samples"),
    ("--teacher_num_val", 1000, int, "student_teacher: validation samples"),
    ("--teacher_n_in", 10, int, "student_teacher: input dimension"),
    ("--teacher_n_out", 2, int, "student_teacher: output dimension"),
    ("--teacher_size_hidden", "5", str, "student_teacher: the teacher's hidden widths, e.g. 10,10"),
    ("--teacher_linear", False, SWITCH, "student_teacher: a linear teacher"),
    ("--data_random_seed", 42, int, "seed of the data: validation split, student_teacher data"),
    ("--size_hidden", "5", str, "hidden widths of the network, e.g. 256,256,256"),
    ("--hidden_activation", "linear", ACTIVATIONS, "hidden nonlinearity (leakyrelu: slope 0.2)"),
    ("--no_bias", False, SWITCH, "no biases"),
    ("--initialization", "xavier_normal", INITIALIZATIONS, "initialisation of the forward "
                                                           "weights (xavier: xavier_uniform)"),
)
RUN_BP = (      # run_bp.py's own options
    ("--freeze_fw_weights", False, SWITCH, "the weights do not learn (the epochs still run)"),
    ("--only_train_first_layer", False, SWITCH, "only the first layer learns"),
    ("--only_train_last_layer", False, SWITCH, "only the last layer learns (a baseline)"),
)


def add_dfc_common(p):
    """Options shared by the strong_dfc scripts (run_bp.py, run_dfc.py, ...), with their defaults."""
    add_table(p, DFC_COMMON)


def add_simkit_options(p):
    """simkit's own options of the strong_dfc commands: ``--resume``, ``--checkpoint-minutes``."""
    g = simkit_group(p)
    g.add_argument("--resume", action="store_true", help="continue the run in --out_dir")
    add_checkpoint_option(g)


def register(sub, parent):
    p = sub.add_parser("run_bp", parents=[parent], help="strong_dfc's run_bp.py, verbatim",
                       description=__doc__.split("\n\n")[0])
    add_dfc_common(p)
    add_table(p, RUN_BP)
    add_simkit_options(p)
    p.set_defaults(func=run)


def dfc_config(args) -> dict:
    """Translate the strong_dfc options shared by all its scripts into a simkit configuration."""
    if args.pretrained_net_dir:
        raise UserError("--pretrained_net_dir is not supported by simkit; use --resume on a run "
                        "directory instead")
    if not 0 < args.target_class_value <= 1:
        raise UserError(f"--target_class_value must be in (0, 1], got {args.target_class_value}")
    dataset, standardize = DATASETS[args.dataset]
    cfg = {
        "dataset": dataset, "standardize": standardize, "data_dir": args.data_dir,
        "val_size": 0 if args.no_val_set or dataset == "student_teacher" else 5000,
        "data_seed": args.data_random_seed, "target_value": args.target_class_value,
        "hidden": parse_sizes(args.size_hidden), "hidden_activation": args.hidden_activation,
        "autoencode": args.dataset == "mnist_autoencoder",
        "loss": "mse" if dataset == "student_teacher" or args.dataset == "mnist_autoencoder"
        else "ce",
        "init": "xavier_uniform" if args.initialization == "xavier" else args.initialization,
        "bias": not args.no_bias, "epochs": 1 if args.test else args.epochs,
        "max_batches": 2 if args.test else 0, "batch_size": args.batch_size,
        "eval_batch_size": 10000, "optimizer": args.optimizer.lower(),
        "lr": parse_number_or_list(args.lr, "--lr"), "momentum": args.momentum,
        "beta1": args.adam_beta1, "beta2": args.adam_beta2,
        "eps": parse_number_or_list(args.adam_epsilon, "--adam_epsilon"),
        "weight_decay": args.weight_decay, "clip": args.clip_grad_norm, "clip_mode": "per_layer",
        "seed": args.random_seed, "dtype": "float64" if args.double_precision else "float32",
        "backend": args.backend or ("numba" if args.no_cuda else None),
        "min_acc": args.min_acc,
    }
    if dataset == "student_teacher":
        cfg["dataset_opts"] = {
            "n_train": args.teacher_num_train, "n_test": args.teacher_num_test,
            "n_in": args.teacher_n_in, "n_out": args.teacher_n_out,
            "hidden": parse_sizes(args.teacher_size_hidden, "teacher_size_hidden"),
            "linear": args.teacher_linear, "seed": args.data_random_seed}
    return cfg


def run(args) -> int:
    cfg = dfc_config(args)
    layers = None
    if args.freeze_fw_weights:
        layers = []
    elif args.only_train_first_layer:
        layers = [0]
    elif args.only_train_last_layer:
        layers = [-1]
    cfg["rule"] = "bp"
    cfg["rule_opts"] = {} if layers is None else {"layers": layers}
    out_dir = Path(args.out_dir) if args.out_dir else None
    if args.resume:
        if not args.out_dir:
            raise UserError("--resume needs --out_dir naming the run to continue")
        execute({}, out_dir, resume=True, args=args)
    else:
        cfg = resolve_config(cfg)
        execute(cfg, out_dir or default_out_dir(cfg, "run_bp"), args=args,
                extra_info={"paper_command": "run_bp", "paper_flags": command_flags(args)})
    return 0
