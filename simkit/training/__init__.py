"""Training: one loop, three schedules, one run-directory and checkpoint format.

``loop.py``         :class:`~simkit.training.loop.Loop`, what every schedule shares: the run's
                    lifecycle (status in ``run.json``), metrics, progress bars, ``checkpoint.npz``
                    and exact resume, NaN and divergence stops, stop reasons, the rule's
                    ``close()``
``progress.py``     plain progress lines where no bar is drawn (no terminal), rate-limited
``epochs.py``       schedule (a): shuffled minibatch epochs (:class:`Trainer`), checkpoints also
                    inside an epoch, ``--min_acc``
``fixed_order.py``  schedule (b): GAIT-prop's fixed-order batches with evaluations every k
                    updates (:class:`GaitTrainer`)
``online.py``       schedule (c): Podlaski & Machens' online loop, sample by sample, paired
                    models, evaluations every k samples (:class:`OnlineTrainer`)
``parallel.py``     paired models split over forked processes
``config.py``       a run's configuration (every key documented) -> data, network, rule,
                    optimiser
``rundir.py``       run directories (``run.json``, ``metrics.csv``, ``checkpoint.npz``), atomic
                    writes, state arrays
``signals.py``      SIGTERM stops a run as Ctrl-C does

A schedule says which samples a step sees and when to evaluate; everything else is the loop's.
The modules are imported by name (``from simkit.training.epochs import Trainer``); this package
imports none of them itself, so that ``simkit.cli`` can load the signal handling alone.
"""
