"""Trainer tests register a tiny model (``models.tiny_test_lm``) and a slow synthetic source."""

import tests.train.tiny_model  # noqa: F401 - registers models.tiny_test_lm, data.slow_synthetic
