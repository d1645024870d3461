"""Sweeps and launching: sweep files → rendered runs → local / SkyPilot / xpk → results.

* :mod:`framework.launch.sweep` reads ``experiments/sweeps/NAME.toml`` and expands it into runs.
* :mod:`framework.launch.render` writes ``runs/NAME/<run_id>/run.gin`` and launch specs.
* :mod:`framework.launch.accelerators` is the accelerator allow-list.
* :mod:`framework.launch.backend` holds what the ``launchers`` plugins share.
* :mod:`framework.launch.results` reads every run's ``metrics.jsonl`` into tables and plots.
"""
