"""deepdive's built-in plugins, one concept per module; each module registers itself on import.

Sub-packages by kind: ``filters``, ``extractors``, ``formatters``, ``tokenizers``, ``models``,
``templates``, ``samplers``, ``launchers``. ``framework.discovery`` imports every module below this package.
"""
