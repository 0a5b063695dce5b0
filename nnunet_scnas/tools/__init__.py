"""User tools around the paper's core: the ``nnunet_scnas`` command (show, cost, demo, compare,
synth), cell diagrams, cost counting and the training-memory estimate. Nothing here is part of
the method; the package above holds the paper."""
