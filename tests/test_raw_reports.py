"""Every figure a model card, README.md or docs/RESULTS.md quotes can be re-checked (issue 26 item 8): each raw
report it names under docs/results/ is committed, none of them says that its raw report was not kept, and the two
shipped models' cards are what their writers make from the committed reports."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "docs" / "RESULTS.md", *sorted((ROOT / "models").glob("*/MODEL_CARD.md"))]

# A repository path (docs/results/...) or, in docs/RESULTS.md, one relative to docs/ (results/...); globs allowed.
REPORT_PATH = re.compile(r"(?<![\w/.-])((?:docs/)?results/[\w./*-]+\.json)")
NOT_KEPT = re.compile(r"raw reports?: not kept|(?:was|were) not kept|not kept \(not committed\)", re.I)


def named_reports(doc: Path) -> list[str]:
    return sorted(set(REPORT_PATH.findall(doc.read_text(encoding="utf-8"))))


def resolve(doc: Path, name: str) -> list[Path]:
    base = ROOT if name.startswith("docs/") else doc.parent
    return sorted(base.glob(name)) if "*" in name else [base / name]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_raw_report_a_doc_names_is_committed(doc):
    missing = [n for n in named_reports(doc) if not any(p.is_file() for p in resolve(doc, n))]
    assert not missing, f"{doc.relative_to(ROOT)} names raw reports that are not in the repository: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_doc_quotes_figures_whose_raw_report_was_not_kept(doc):
    hits = [line.strip()[:120] for line in doc.read_text(encoding="utf-8").splitlines() if NOT_KEPT.search(line)]
    assert not hits, f"{doc.relative_to(ROOT)} quotes figures without their raw report: {hits}"


def test_the_model_cards_name_their_raw_reports():
    """A card's eval tables are written from reports kept under docs/results/reports/<model>/ (and say so)."""
    for card in sorted((ROOT / "models").glob("*/MODEL_CARD.md")):
        names = named_reports(card)
        assert any(n.startswith(f"docs/results/reports/{card.parent.name}/") for n in names), card


def test_the_checks_catch_a_missing_report_and_a_not_kept_note(tmp_path):
    doc = tmp_path / "MODEL_CARD.md"
    doc.write_text("Raw report: `docs/results/reports/nowhere/s0.json`.\n**Raw reports: not kept.** gone\n")
    assert named_reports(doc) == ["docs/results/reports/nowhere/s0.json"]
    assert not resolve(doc, "docs/results/reports/nowhere/s0.json")[0].is_file()
    assert NOT_KEPT.search(doc.read_text())


def _load_bench(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_synesthete_tiny_card_tables_are_its_kept_reports():
    """The card's GENERATED part is what bench/tiny_model_card.py writes from the committed reports, byte for byte."""
    import json

    mod = _load_bench("tiny_model_card")
    text = mod.CARD.read_text(encoding="utf-8")
    reps = [json.loads((mod.KEPT / f"{n}.json").read_text()) for n in mod.REPORT_NAMES]
    mod.use_work_of(reps[0])
    body = mod.generated(reps[:2], reps[2:], json.loads((mod.KEPT / "eval.json").read_text()))
    assert body in text


def test_synesthete_tiny_live_card_is_its_kept_reports():
    """The live card is what bench/live_model_card.py writes from the committed reports, byte for byte."""
    import json

    mod = _load_bench("live_model_card")
    model = ROOT / "models" / mod.NAME
    text = (model / "MODEL_CARD.md").read_text(encoding="utf-8")
    reps = [json.loads((mod.KEPT / f"{n}.json").read_text()) for n in mod.REPORT_NAMES]
    mod.use_work_of(reps[0])
    label = "`models/synesthete-tiny`, evaluated by the third command (sampling seed 0, its own guidance)"
    prov = json.loads((mod.KEPT / "eval.json").read_text())
    assert mod.card(model, reps[0], reps[1], label, (reps[2], reps[3]), prov) == text


def test_every_bench_results_section_with_a_table_names_its_commit():
    """issue 26 item 7: a generated table says which code it measured (a commit hash in its section)."""
    text = (ROOT / "bench" / "RESULTS.md").read_text()
    for part in re.split(r"(?m)^## ", text)[1:]:
        title = part.split("\n", 1)[0]
        if re.search(r"(?m)^\|.*\|$", part):
            assert re.search(r"commit[^\n]{0,60}`?[0-9a-f]{7,40}", part, re.I), f"bench/RESULTS.md '{title}': no commit"
