"""Launchers: where the runs of a sweep go (``local``, ``skypilot``, ``xpk``).

See :mod:`framework.launch.backend` for what a launcher provides.
"""
