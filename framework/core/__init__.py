"""The core every stage stands on: plugin registries and discovery, gin configuration, errors,
the cache directory and multi-host start-up. Imports nothing else of deepdive."""
