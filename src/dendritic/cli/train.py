"""``dendritic train`` and ``dendritic demo``."""

from __future__ import annotations

import argparse
from typing import Any

from dendritic.cli.args import (
    add_data_dir,
    add_model_options,
    add_optimizer,
    add_selectivity_options,
    check_data_dir,
    epochs_int,
    int_in,
    lr_float,
    model_options_of,
    no_store_conflicts,
    positive_int,
    seed_int,
    sigma_float,
    store_files,
    store_path,
    threads_int,
    writing_store,
)
from dendritic.cli.progress import progress_callbacks
from dendritic.files import check_output_dir

__all__ = ["add_demo_parser", "add_train_parser", "cmd_demo", "cmd_train"]


def cmd_train(args: argparse.Namespace) -> int:
    from dendritic.models.checkpoint import check_owner, check_target
    from dendritic.sweeps.grids import experiment_of
    from dendritic.training import TrainConfig, train

    config = TrainConfig(
        **model_options_of(args),
        dataset=args.dataset,
        lr=args.lr,
        batch_size=args.batch_size,
        epochs=args.epochs,
        seed=args.seed,
        sigma=args.sigma,
        sequential=args.sequential,
        early_stop=args.early_stop,
        limit=args.limit,
        optimizer=args.optimizer,
        lottery=args.lottery,
        prune_rounds=args.prune_rounds,
        rewind_epoch=args.rewind_epoch,
        parent_epochs=args.parent_epochs,
        selectivity_alpha=args.selectivity_alpha,
        selectivity_layers=args.selectivity_layers,
    )
    no_store_conflicts(args)
    check_data_dir(args)
    path = None if args.no_store else store_path(args)
    if args.checkpoint is not None:  # before any training: a bad path must not cost a run
        # nor may one run's checkpoint replace another's (the file's own run, then the store's)
        check_target(args.checkpoint, protected=tuple(store_files(path)), config=config.to_dict())
    with writing_store(path) as store:
        if args.checkpoint is not None and store is not None:
            check_owner(args.checkpoint, config.to_dict(), store=store)
        result = train(
            config,
            store=store,
            device=args.device,
            data_dir=args.data_dir,
            checkpoint=args.checkpoint,
            callbacks=progress_callbacks(args.quiet),
            replace=args.replace,
            threads=args.threads,
            experiment=experiment_of(config.to_dict()),
        )
    where = f", run {result.run_id} in {path}" if result.run_id is not None else ""
    print(
        f"{config.model} on {config.dataset}: test accuracy {100 * result.test_accuracy:.2f} %, "
        f"test loss {result.test_loss:.4f}, {result.trainable_params:,} trainable parameters, "
        f"{result.seconds:.1f} s{where}"
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from dendritic.demo import run_demo

    check_data_dir(args)
    store = None if args.store is None else store_path(args)
    check_output_dir(args.out, option="--out", protected=store_files(store))
    result = run_demo(
        out=args.out,
        store_path=args.store,
        data_dir=args.data_dir,
        epochs=args.epochs,
        quick=args.quick,
        threads=args.threads,
        callbacks=progress_callbacks(False),
    )
    print()
    print(result.format_table())
    print()
    print(result.message)
    plot = f" and {result.plot}" if result.plot else ""
    print(f"wrote {result.table}{plot}; demo took {result.seconds / 60:.1f} min")
    return 0


def add_train_parser(sub: Any) -> None:
    # train
    p = sub.add_parser(
        "train",
        help="train one model with the paper's protocol",
        description="Train one model with the paper's protocol (Adam 1e-3, batch 128, 10% validation) "
        "and record it in the results store.",
    )
    add_model_options(p)  # --model, --dendrites, ... --init: the fields of ModelSpec
    p.add_argument("--dataset", default="fmnist", help="mnist, fmnist, kmnist, emnist or cifar10")
    p.add_argument("--seed", type=seed_int, default=1, help="trial seed: wiring, weights, splits, noise")
    p.add_argument("--epochs", type=epochs_int, default=None, help="default: the paper's count per dataset")
    p.add_argument("--lr", type=lr_float, default=1e-3, help="Adam learning rate, in (0, 1000]")
    p.add_argument("--batch-size", type=positive_int, default=128)
    add_optimizer(p)
    p.add_argument(
        "--sigma", type=sigma_float, default=0.0, help="Gaussian noise s.d. on all splits, in [0, 100]"
    )
    p.add_argument(
        "--sequential", action="store_true", help="class-sequential protocol (single-class batches)"
    )
    p.add_argument("--early-stop", action="store_true", help="patience 10 on validation loss, <= 100 epochs")
    p.add_argument(
        "--limit",
        type=positive_int,
        default=None,
        help="use at most this many training images, validation included (quick runs; the test set "
        "stays whole)",
    )
    add_lottery_options(p)
    add_selectivity_options(p)
    p.add_argument("--store", default=None, help="SQLite results store (default runs.db)")
    p.add_argument("--no-store", action="store_true", help="do not record the run")
    p.add_argument("--replace", action="store_true", help="run again even if the store has this run finished")
    p.add_argument(
        "--checkpoint",
        default=None,
        help="save the trained model here (safetensors + JSON); refused if another run's checkpoint "
        "is there (the same config may overwrite its own)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument(
        "--threads",
        type=threads_int,
        default=None,
        help="CPU threads for PyTorch, 1-1024 (default: every core, fewer while other processes use them)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_data_dir(p)
    p.set_defaults(func=cmd_train)


def add_lottery_options(p: argparse.ArgumentParser) -> None:
    """Lottery tickets (``dendritic.training.lottery``): a vANN pruned to the dANN's nonzeros."""
    from dendritic.training.lottery import LOTTERY_MODES, MAX_ROUNDS

    g = p.add_argument_group("lottery tickets (--model vANN: pruned by magnitude to the dANN's nonzeros)")
    g.add_argument(
        "--lottery",
        choices=LOTTERY_MODES,
        default="none",
        help="rewind the pruned parent to its early weights, or fine-tune it (default none)",
    )
    g.add_argument(
        "--prune-rounds",
        type=int_in(1, MAX_ROUNDS),
        default=1,
        help="rounds of magnitude pruning (default 1)",
    )
    g.add_argument(
        "--rewind-epoch",
        type=int_in(0, 100_000),
        default=1,
        help="--lottery rewind: rewind to the parent's weights after this epoch (0: initial; default 1)",
    )
    g.add_argument(
        "--parent-epochs",
        type=int_in(1, 100_000),
        default=None,
        help="epochs of the dense parent and of each round (default: --epochs)",
    )


def add_demo_parser(sub: Any) -> None:
    # demo
    p = sub.add_parser(
        "demo",
        help="the paper's effect on real Fashion-MNIST in a few minutes",
        description="Train dANN-LRF, dANN-GRF, dANN-R and vANN on Fashion-MNIST at a few sizes, print "
        "test accuracy vs trainable parameters, write a plot, and say whether a dANN came within one "
        "point of the best vANN with at least 10x fewer parameters.",
    )
    p.add_argument("--out", default="demo-output", help="folder for the plot, table and store")
    p.add_argument("--store", default=None, help="results store (default OUT/runs.db)")
    p.add_argument("--epochs", type=epochs_int, default=None, help="epochs per run (default: fits ~10 min)")
    p.add_argument("--quick", action="store_true", help="a one-minute smoke version on a data subset")
    p.add_argument(
        "--threads",
        type=threads_int,
        default=1,
        help="CPU threads (default 1: these small models gain little from more, and a busy "
        "machine makes extra threads wait on each other)",
    )
    add_data_dir(p)
    p.set_defaults(func=cmd_demo)
