"""Training, in pieces small enough to read one at a time (the entry point, ``train()``, is
:mod:`graphnet.train`):

- :mod:`.step` — one step: forward with the loss, backward, clipping, the optimizer's update;
  ``graphnet bench`` times this same step;
- :mod:`.loop` — epochs of steps, Ctrl-C, a checkpoint and a history record per epoch, events;
- :mod:`.state` — what a checkpoint holds besides parameters, and resuming bit for bit;
- :mod:`.classification` — the application the loop runs: images and labels in, accuracy,
  test and validation evaluation after each epoch, evaluating a checkpoint;
- :mod:`.events` — what training tells its caller; :mod:`.watch` — node health (``--watch``).

Nothing is imported here, so importing one piece loads only what it needs.
"""
