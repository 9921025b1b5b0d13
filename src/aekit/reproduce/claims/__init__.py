"""The claims, one module per part of the lineage; every module here is imported by the registry.

To add claims (e.g. for the VQ-VAE), add a module that builds :class:`aekit.reproduce.Claim` objects
and passes each to :func:`aekit.reproduce.register`; nothing else changes. Modules whose name starts
with an underscore are not imported.
"""
