"""Programs run inside a checkout of some revision of this project (``tools/revisions.py``):
they import that revision's ``job``, ``udfs`` and ``state``, and only what every revision
since the packages existed provides, so a newer checkout can drive an older one."""
