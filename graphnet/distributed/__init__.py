"""Data-parallel training on Ray: ``graphnet train SPEC --workers N``.

N workers (Ray actors, one process each) hold the network, its optimizer and the training split.
Each step the driver — the process that runs ``graphnet train`` and its loop
(:mod:`graphnet.training.loop`) — hands every worker the global batch's sample indices and its
contiguous share of them. Each worker computes its share's gradients, scaled by its share of
the batch, and puts them into Ray's object store; each then fetches all of them, sums them in
rank order and applies the same update, so the workers' parameters stay identical and the step
equals one process's step up to the order of summation.

- :mod:`.cluster` — Ray itself: imported here only, a local instance started and stopped by
  graphnet or a cluster joined (``--ray-address``/``RAY_ADDRESS``);
- :mod:`.worker` — what runs in a worker: the network, one step's gradients, the update;
- :mod:`.group` — the driver's side: starting the workers, one step over all of them,
  noticing a dead or stuck worker, the compute/communication timings;
- :mod:`.training` — the loop on workers: checkpoints and evaluation from rank 0's state,
  restarting the workers from the last checkpoint when one dies; ``graphnet bench --workers``.

Nothing is imported here: importing graphnet never imports Ray.
"""
