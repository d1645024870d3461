"""Training: the loop (``loop``), the jitted step and optimiser (``step``), grain input
(``input``), orbax checkpoints, evaluation, metrics, and the sharding rules over the mesh."""
