"""``python -m job config``: the effective configuration, its reference, or its schema."""

from __future__ import annotations

import argparse
import json

import yaml

from job.config import JobConfig, to_plain
from job.kafka_io import is_secret

__all__ = ["add_arguments", "run"]

USES_CONFIG = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--reference",
        action="store_true",
        help="print every key with its type, default and description (markdown)",
    )
    p.add_argument(
        "--schema", action="store_true", help="print a JSON Schema of the configuration file"
    )


def run(args: argparse.Namespace, cfg: JobConfig) -> int:
    if args.reference or args.schema:
        from job.config_reference import json_schema, reference_markdown

        print(reference_markdown() if args.reference else json.dumps(json_schema(), indent=2))
        return 0
    plain = to_plain(cfg)
    kafka = plain.get("kafka", {})
    kafka["properties"] = [[k, "*****" if is_secret(k) else v] for k, v in kafka.get("properties", [])]
    print(yaml.safe_dump(plain, sort_keys=False), end="")
    return 0
