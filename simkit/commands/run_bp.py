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

import time
from pathlib import Path

from simkit.commands.runner import (
    add_checkpoint_option,
    command_flags,
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
IGNORED_FLAGS = ("--no_plots", "--loglevel_info", "--deterministic_run", "--save_checkpoints")


def add_dfc_common(p):
    """Options shared by the strong_dfc scripts (run_bp.py, run_dfc.py, ...), with their defaults."""
    a = p.add_argument
    a("--out_dir", default=None, help="run directory (default: ./out/run_DATE)")
    a("--no_cuda", action="store_true", help="do not use a GPU")
    a("--random_seed", type=int, default=42)
    a("--double_precision", action="store_true", help="float64 (default float32)")
    a("--test", action="store_true", help="1 epoch of 2 batches (a smoke test)")
    for flag in IGNORED_FLAGS:
        a(flag, action="store_true", help="accepted; no effect in simkit")
    a("--checkpoint_interval", default="20", help="accepted; simkit checkpoints every epoch")
    a("--epoch_summary_interval", type=int, default=-1, help="accepted; no effect")
    a("--pretrained_net_dir", default=None, help="not supported")
    a("--epochs", type=int, default=2)
    a("--batch_size", type=int, default=128)
    a("--clip_grad_norm", type=float, default=-1.0, help="per-layer gradient clipping (-1: off)")
    a("--min_acc", type=float, default=0.0,
      help="stop after epoch 4 if its train accuracy is below this (0: never)")
    a("--lr", default="0.1", help="float or per-layer list [a,b,...]")
    a("--optimizer", default="SGD", choices=("SGD", "RMSprop", "Adam"))
    a("--momentum", type=float, default=0.0)
    a("--weight_decay", type=float, default=0.0)
    a("--adam_beta1", type=float, default=0.99)
    a("--adam_beta2", type=float, default=0.99)
    a("--adam_epsilon", default="1e-8", help="float or per-layer list")
    a("--dataset", default="mnist", choices=tuple(DATASETS))
    a("--no_val_set", action="store_true", help="train on all 60k (no validation split)")
    a("--target_class_value", type=float, default=1.0)
    a("--teacher_num_train", type=int, default=1000)
    a("--teacher_num_test", type=int, default=1000)
    a("--teacher_num_val", type=int, default=1000)
    a("--teacher_n_in", type=int, default=10)
    a("--teacher_n_out", type=int, default=2)
    a("--teacher_size_hidden", default="5")
    a("--teacher_linear", action="store_true")
    a("--data_random_seed", type=int, default=42)
    a("--size_hidden", default="5")
    a("--hidden_activation", default="linear",
          choices=("linear", "tanh", "relu", "leakyrelu", "sigmoid"))
    a("--no_bias", action="store_true")
    a("--initialization", default="xavier_normal", choices=("orthogonal", "xavier", "xavier_normal"))


def register(sub, parent):
    p = sub.add_parser("run_bp", parents=[parent], help="strong_dfc's run_bp.py, verbatim",
                       description=__doc__.split("\n\n")[0])
    add_dfc_common(p)
    p.add_argument("--freeze_fw_weights", action="store_true", help="train nothing (a baseline)")
    p.add_argument("--only_train_first_layer", action="store_true")
    p.add_argument("--only_train_last_layer", action="store_true")
    p.add_argument("--resume", action="store_true", help="continue the run in --out_dir")
    add_checkpoint_option(p)
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
    out_dir = Path(args.out_dir or Path("out") / time.strftime("run_%Y-%m-%d_%H-%M-%S"))
    if args.resume:
        if not args.out_dir:
            raise UserError("--resume needs --out_dir naming the run to continue")
        execute({}, out_dir, resume=True, args=args)
    else:
        execute(resolve_config(cfg), out_dir, args=args,
                extra_info={"paper_command": "run_bp", "paper_flags": command_flags(args)})
    return 0
