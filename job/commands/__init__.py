"""The job's own commands (``python -m job run | replay | config``), one module each, registered
in :data:`job.cli.COMMANDS` like the tools' (``tools/``): each has ``add_arguments(parser)``
and ``run(args, cfg)``."""
