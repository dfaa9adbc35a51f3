"""Every configuration key is described with the code, and the written reference and schema
are what the code says."""

from __future__ import annotations

import json

import jsonschema
import yaml

from job.config_reference import DOC, SCHEMA, json_schema, reference_markdown, reference_rows


def test_every_key_has_a_description() -> None:
    undescribed = [key for key, _tp, _default, text in reference_rows() if not text.strip()]
    assert undescribed == []
    assert len(reference_rows()) > 100


def test_the_configuration_doc_is_the_generated_reference() -> None:
    text = DOC.read_text()
    block = text.split("<!-- config-reference:start -->\n", 1)[1].split("\n<!-- config-reference:end -->")[0]
    assert block == reference_markdown(), "run: python -c 'from job.config_reference import write_docs; write_docs()'"


def test_the_schema_file_is_current_and_checks_a_configuration_file() -> None:
    assert json.loads(SCHEMA.read_text()) == json_schema()
    validator = jsonschema.Draft202012Validator(json_schema())
    profile = yaml.safe_load((SCHEMA.parent.parent / "profiles" / "default.yaml").read_text())
    assert list(validator.iter_errors(profile)) == []
    bad = {"detector": {"model": {"ensembl": ["seasonal"]}, "threshold": {"min_events": "x"}}}
    messages = sorted(e.message for e in validator.iter_errors(bad))
    assert any("'ensembl' was unexpected" in m for m in messages)
    assert any("'x' is not of type 'integer'" in m for m in messages)
