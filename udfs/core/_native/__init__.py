"""Compiled copies of core modules, built by ``scripts/build_native.py`` (not in git).

Each is named after the SHA-256 of the source it was compiled from, so a module only ever
uses a copy of its own bytes (:func:`udfs.core.native.compiled`).
"""
