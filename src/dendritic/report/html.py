"""Building the report page: gather what the store holds, the figures and tables, and render HTML."""

from __future__ import annotations

import base64
import html
import os
import platform
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dendritic.errors import PathError
from dendritic.files import atomic_write_text, check_output_file, read_bounded, read_json
from dendritic.report.runs import EXPERIMENTS, experiment_of_run

__all__ = ["ReportFigure", "build_report", "render_report", "run_counts"]

STATUSES = ("finished", "running", "interrupted", "failed")

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto;
       max-width: 1100px; padding: 1.5em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
.meta { color: #666; font-size: 0.9em; }
table.data { border-collapse: collapse; font-size: 0.85em; margin: 0.8em 0; }
table.data th, table.data td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
table.data th { background: #f3f3f3; }
table.data td:first-child, table.data th:first-child { text-align: left; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; }
ul.skipped li { color: #8a5a00; }
nav ul { columns: 2; font-size: 0.9em; }
code { background: #f5f5f5; padding: 0 0.2em; }
"""


#: The page's only script: once loaded, it records how many embedded images decoded, so a
#: headless browser (the test suite's check) can tell a broken page from a good one.
_SELF_CHECK = """
window.addEventListener("load", function () {
  var images = document.images, ok = 0;
  for (var i = 0; i < images.length; i++) {
    if (images[i].complete && images[i].naturalWidth > 0) { ok++; }
  }
  document.body.setAttribute("data-images", String(images.length));
  document.body.setAttribute("data-images-decoded", String(ok));
  console.info("dendritic report loaded: " + ok + "/" + images.length + " images decoded");
});
"""


@dataclass
class ReportFigure:
    name: str
    label: str
    caption: str
    png: bytes
    #: the table ``dendritic figures`` wrote beside the figure: {"title", "header", "rows"}
    table: dict[str, Any] | None = None


@dataclass
class _Content:
    figures: list[ReportFigure] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    tables: list[Any] = field(default_factory=list)
    dataset: str | None = None
    continual: list[_ContinualSection] = field(default_factory=list)


@dataclass
class _ContinualSection:
    """One comparison of continual runs: its title, its table rows and its figures."""

    title: str
    rows: list[Any]
    figures: list[ReportFigure]


def run_counts(runs: Sequence[Mapping[str, Any]]) -> dict[str, Counter[str]]:
    """experiment → Counter(status) over all runs; runs of no experiment count as "other"."""
    out: dict[str, Counter[str]] = {e: Counter() for e in (*EXPERIMENTS, "continual")}
    for run in runs:
        out.setdefault(experiment_of_run(run) or "other", Counter())[str(run.get("status"))] += 1
    return {e: c for e, c in out.items() if c}


def _versions() -> dict[str, str]:
    from dendritic._version import __version__

    out = {"dendritic": __version__, "python": platform.python_version()}
    for module in ("torch", "numpy", "scipy", "sklearn", "matplotlib"):
        try:
            out[{"sklearn": "scikit-learn"}.get(module, module)] = __import__(module).__version__
        except ImportError:
            out[module] = "not installed"
    out["platform"] = platform.platform(terse=True)
    return out


#: Limits on what a figures folder may hand the report (ours are ~100 KB PNGs and a 10 KB manifest).
MAX_PNG_BYTES = 32 << 20
MAX_MANIFEST_BYTES = 1 << 20
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _figure_png(folder: Path, name: Any) -> bytes | None:
    """The PNG of figure ``name`` inside ``folder``, or None if absent. A name that is not a
    plain file name, or a file (or link) that leads outside the folder, is refused: a published
    report must never embed a file from elsewhere on the machine."""
    if (
        not isinstance(name, str)
        or not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\0" in name
    ):
        raise PathError(f"{folder / 'figures.json'} names figure {name!r}, which is not a plain file name")
    png = folder / f"{name}.png"
    if not png.exists():
        return None
    try:
        png.resolve().relative_to(folder.resolve())
    except ValueError:
        raise PathError(f"{png} leads outside {folder} (a link?); refusing to embed it") from None
    data = read_bounded(png, limit=MAX_PNG_BYTES)
    if not data.startswith(_PNG_MAGIC):
        raise PathError(f"{png} is not a PNG image")
    return data


def _text(manifest_path: Path, entry: dict[str, Any], key: str) -> str:
    value = entry.get(key, "")
    if not isinstance(value, str):
        raise PathError(f"{manifest_path}: figure {key} must be text, got {type(value).__name__}")
    return value


def _figure_table(manifest_path: Path, entry: dict[str, Any]) -> dict[str, Any] | None:
    """A figure's table as figures.json gives it (title, header cells, rows of cells), checked."""
    table = entry.get("table")
    if table is None:
        return None
    ok = (
        isinstance(table, dict)
        and isinstance(table.get("title"), str)
        and isinstance(table.get("header"), list)
        and all(isinstance(h, str) for h in table["header"])
        and isinstance(table.get("rows"), list)
        and all(isinstance(r, list) and all(isinstance(c, str) for c in r) for r in table["rows"])
    )
    if not ok:
        raise PathError(
            f"{manifest_path}: the table of figure {entry.get('name')!r} is not title, header and rows"
        )
    return dict(table)


def _from_folder(folder: Path, content: _Content) -> None:
    """Figures (PNG) of a folder written by ``dendritic figures``, with captions from figures.json."""
    if not folder.is_dir():
        raise FileNotFoundError(f"no figures folder at {folder}")
    manifest_path = folder / "figures.json"
    if manifest_path.is_file():
        manifest = read_json(manifest_path, limit=MAX_MANIFEST_BYTES)
        entries = manifest.get("figures", []) if isinstance(manifest, dict) else None
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise PathError(f"{manifest_path} is not a figures manifest (no list of figures)")
        for entry in entries:
            png = _figure_png(folder, entry.get("name"))
            if png is not None:
                content.figures.append(
                    ReportFigure(
                        entry["name"],
                        _text(manifest_path, entry, "label"),
                        _text(manifest_path, entry, "caption"),
                        png,
                        _figure_table(manifest_path, entry),
                    )
                )
        skipped = manifest.get("skipped", {})
        notes = manifest.get("notes", [])
        if not isinstance(skipped, dict) or not isinstance(notes, list):
            raise PathError(f"{manifest_path}: skipped must be an object and notes a list")
        content.skipped.update({str(k): str(v) for k, v in skipped.items()})
        content.notes += [str(n) for n in notes]
        dataset = manifest.get("dataset")
        content.dataset = dataset if isinstance(dataset, str) else None
        return
    from dendritic.figures.specs import FIGURES

    pngs = sorted(folder.glob("*.png"))
    if not pngs:
        raise FileNotFoundError(f"no PNG figures in {folder}")
    for path in pngs:
        info = FIGURES.get(path.stem)
        label = info.label if info else path.stem
        data = _figure_png(folder, path.stem)
        if data is not None:
            content.figures.append(ReportFigure(path.stem, label, info.caption if info else "", data))


def build_report(
    store: Any,
    out: str | os.PathLike[str],
    *,
    figures_dir: str | os.PathLike[str] | None = None,
    on: str = "validation",
    dataset: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    tsne_samples: int = 500,
    workers: int = 1,
    optimizer: str | None = None,
) -> Path:
    """Write the HTML report of ``store`` to ``out``; returns its path.

    ``figures_dir``: embed the figures of a ``dendritic figures`` folder; without it the figures
    are drawn now (PNG only, into a temporary folder; ``workers`` processes analyse the
    checkpoints of Figs 5–6). Tables are always computed from the store.
    """
    from dendritic.figures.tables import table1, table2
    from dendritic.report.make import make_figures
    from dendritic.report.runs import load_runs

    protected = store.own_files() if hasattr(store, "own_files") else []
    check_output_file(out, option="report file", protected=protected)
    content = _Content()
    if figures_dir is not None:
        _from_folder(Path(figures_dir), content)
    else:
        with tempfile.TemporaryDirectory(prefix="dendritic-report-") as tmp:
            result = make_figures(
                store,
                tmp,
                on=on,
                dataset=dataset,
                data_dir=data_dir,
                tsne_samples=tsne_samples,
                formats=("png",),
                workers=workers,
                optimizer=optimizer,
            )
            from dendritic.figures.specs import FIGURES

            for name, paths in result.figures.items():
                png = next(p for p in paths if p.suffix == ".png")
                info = FIGURES[name]
                content.figures.append(
                    ReportFigure(
                        name, info.label, info.caption, png.read_bytes(), result.figure_tables.get(name)
                    )
                )
            content.skipped = dict(result.skipped)
            content.notes = list(result.notes)
            content.dataset = result.dataset
    runs = load_runs(store, optimizer=optimizer)
    content.notes += [note for note in runs.damaged_notes() if note not in content.notes]
    from dendritic.figures.specs import FigureInputs

    by_dataset = FigureInputs(runs, None, on=on).by_dataset
    content.tables = [table1(by_dataset, on), table2(by_dataset, on)]
    for table in content.tables:
        table.note = f"{table.note} {runs.optimizer_note()}".strip()
    every = store.list_runs()
    sound = [r for r in every if not r.get("problem")]  # damaged runs: named in the notes above
    content.continual = _continual_sections([r for r in sound if r.get("status") == "finished"])
    page = render_report(
        content,
        counts=run_counts(every),
        others=other_runs(sound),
        store_path=str(getattr(store, "path", "")),
        on=on,
        finished=len(runs.runs),
        per_model=Counter((r.get("dataset"), r.get("model")) for r in runs.runs),
    )
    return atomic_write_text(out, page)


def _continual_sections(runs: Sequence[Mapping[str, Any]]) -> list[_ContinualSection]:
    """The store's continual comparisons, each with its heat maps and forgetting plot drawn now."""
    from dendritic.continual.compare import comparisons_from_runs
    from dendritic.continual.figures import write_comparison_figures

    sections = []
    for i, (title, comparison) in enumerate(comparisons_from_runs([dict(r) for r in runs])):
        figures = []
        with tempfile.TemporaryDirectory(prefix="dendritic-continual-") as tmp:
            for path in write_comparison_figures(comparison, tmp):
                if path.stem == "continual-forgetting-vs-params":
                    label, caption = (
                        f"Forgetting vs parameters — {title}",
                        "Forgetting (Chaudhry et al.; mean ± s.d. over seeds) of each model against "
                        "its trainable parameters; marker shape = scenario.",
                    )
                else:
                    scenario = path.stem.removeprefix(f"continual-{comparison.rows[0].benchmark}-")
                    scenario = scenario.removesuffix("-matrices")
                    label, caption = (
                        f"Accuracy matrices ({scenario}) — {title}",
                        "R[i, j]: test accuracy (%) on task j after training task i, mean over seeds; "
                        "one panel per model.",
                    )
                figures.append(ReportFigure(f"continual-{i}-{path.stem}", label, caption, path.read_bytes()))
        sections.append(_ContinualSection(title, comparison.rows, figures))
    return sections


def _continual_table(rows: Sequence[Any]) -> str:
    def cell(row: Any, name: str) -> str:
        mean, sd = row.stats[name]
        if mean != mean:  # NaN: undefined for this run (e.g. FWT of one task)
            return "–"
        return f"{100 * mean:.2f}" + (f" ± {100 * sd:.2f}" if sd == sd else "")

    head = ("scenario", "model", "D", "S", "parameters", "seeds", "ACC %", "forgetting", "BWT", "FWT")
    out = ['<table class="data"><thead><tr>', *(f"<th>{h}</th>" for h in head), "</tr></thead><tbody>"]
    for r in rows:
        cells = (
            r.scenario,
            r.model,
            r.dendrites,
            r.somata,
            f"{r.params:,}",
            len(r.seeds),
            cell(r, "acc"),
            cell(r, "forgetting"),
            cell(r, "bwt"),
            cell(r, "fwt"),
        )
        out.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _figure_html(fig: ReportFigure) -> str:
    data = base64.b64encode(fig.png).decode("ascii")
    html_ = (
        f'<figure id="{_e(fig.name)}"><h3>{_e(fig.label)}</h3>'
        f'<img src="data:image/png;base64,{data}" alt="{_e(fig.label)}">'
        f"<figcaption>{_e(fig.caption)}</figcaption></figure>"
    )
    if fig.table is not None:
        head = "".join(f"<th>{_e(h)}</th>" for h in fig.table["header"])
        body = "".join(
            "<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in fig.table["rows"]
        )
        html_ += (
            f"<p><b>{_e(fig.table['title'])}</b></p>"
            f'<table class="data" id="{_e(fig.name)}-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
        )
    return html_


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _counts_table(counts: Mapping[str, Counter[str]]) -> str:
    statuses = [s for s in STATUSES if any(c.get(s) for c in counts.values())] or ["finished"]
    head = "<th>experiment</th>" + "".join(f"<th>{_e(s)}</th>" for s in statuses) + "<th>total</th>"
    rows = []
    for exp, c in counts.items():
        cells = "".join(f"<td>{c.get(s, 0)}</td>" for s in statuses)
        sweep = f"<code>dendritic sweep {_e(exp)}</code>" if exp in EXPERIMENTS else _e(exp)
        rows.append(f"<tr><td>{sweep}</td>{cells}<td>{sum(c.values())}</td></tr>")
    if not rows:
        rows.append(f'<tr><td colspan="{len(statuses) + 2}">no runs</td></tr>')
    return f'<table class="data" id="run-counts"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _models_table(per_model: Mapping[tuple[Any, Any], int]) -> str:
    from dendritic.figures.style import dataset_label, order_datasets, order_models

    datasets = order_datasets(d for d, _ in per_model if d)
    models = order_models(m for _, m in per_model if m)
    if not datasets:
        return ""
    head = "<th>model</th>" + "".join(f"<th>{_e(dataset_label(d))}</th>" for d in datasets)
    body = "".join(
        f"<tr><td>{_e(m)}</td>" + "".join(f"<td>{per_model.get((d, m), 0)}</td>" for d in datasets) + "</tr>"
        for m in models
    )
    return f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


#: At most this many rows in the table of runs outside the paper's experiments.
OTHER_ROWS = 200


def other_runs(runs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Finished runs of no paper experiment and not continual: a user's own models (``fit``
    with ``RecordRun``), the demo, runs of mixed settings."""
    out = []
    for run in runs:
        if run.get("status") == "finished" and experiment_of_run(run) not in (*EXPERIMENTS, "continual"):
            out.append(run)
    return out


def _other_table(runs: Sequence[Mapping[str, Any]]) -> str:
    def num(value: Any, fmt: str) -> str:
        return "–" if value is None else format(value, fmt)

    head = (
        "run",
        "experiment",
        "model",
        "dataset",
        "parameters",
        "test acc %",
        "test loss",
        "epochs",
        "seconds",
    )
    out = [
        '<table class="data" id="other-runs"><thead><tr>',
        *(f"<th>{h}</th>" for h in head),
        "</tr></thead><tbody>",
    ]
    for r in runs[-OTHER_ROWS:]:
        acc = r.get("test_accuracy")
        cells = (
            r.get("id"),
            r.get("experiment") or "–",
            r.get("model") or "–",
            r.get("dataset") or "–",
            num(r.get("trainable_params"), ","),
            "–" if acc is None else f"{100 * acc:.2f}",
            num(r.get("test_loss"), ".4f"),
            num(r.get("epochs_run"), "d"),
            num(r.get("wall_seconds"), ".1f"),
        )
        out.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def render_report(
    content: _Content,
    *,
    counts: Mapping[str, Counter[str]],
    store_path: str = "",
    on: str = "validation",
    finished: int = 0,
    per_model: Mapping[tuple[Any, Any], int] | None = None,
    generated: datetime | None = None,
    others: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The whole page as one string (no external resources)."""
    from dendritic.figures.style import dataset_label

    generated = generated or datetime.now(timezone.utc)
    stamp = generated.isoformat(timespec="seconds")
    versions = _versions()
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>dendritic report — {_e(Path(store_path).name or 'runs')}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Dendritic ANNs — results report</h1>",
        f'<p class="meta">Store <code>{_e(store_path)}</code> · generated <time datetime="{_e(stamp)}">'
        f"{_e(stamp)}</time> · dendritic {_e(versions['dendritic'])} · configurations chosen on the "
        f"<b>{_e(on)}</b> split"
        + (f" · per-dataset figures: {_e(dataset_label(content.dataset))}" if content.dataset else "")
        + "</p>",
        "<nav><h2>Contents</h2><ul>",
        '<li><a href="#runs">Runs</a></li><li><a href="#tables">Tables</a></li>',
        *(f'<li><a href="#{_e(f.name)}">{_e(f.label)}</a></li>' for f in content.figures),
        *(['<li><a href="#continual">Continual learning</a></li>'] if content.continual else []),
        '<li><a href="#skipped">Not drawn</a></li><li><a href="#environment">Environment</a></li>',
        "</ul></nav>",
        '<h2 id="runs">Runs</h2>',
        f"<p>{finished} finished runs. Runs by experiment (the sweep each was made for; runs stored before runs were tagged, by their config) and status:</p>",
        _counts_table(counts),
    ]
    if per_model:
        parts += ["<p>Finished runs by model and dataset:</p>", _models_table(per_model)]
    if others:
        shown = f" (the last {OTHER_ROWS})" if len(others) > OTHER_ROWS else ""
        parts += [
            f"<p>{len(others)} finished run(s) outside the paper's experiments{shown}: your own "
            "models, the demo, runs that change several protocol settings. They are in no table "
            "or figure below.</p>",
            _other_table(others),
        ]
    parts.append('<h2 id="tables">Tables</h2>')
    for table in content.tables:
        parts += [f"<h3>{_e(table.title)}</h3>", f"<p>{_e(table.note)}</p>"]
        parts.append(
            table.to_html() if table.rows else "<p><i>No rows: the main sweep has no runs yet.</i></p>"
        )
    parts.append('<h2 id="figures">Figures</h2>')
    if not content.figures:
        parts.append("<p><i>No figure could be drawn from this store.</i></p>")
    parts += [_figure_html(fig) for fig in content.figures]
    if content.continual:
        parts += [
            '<h2 id="continual">Continual learning</h2>',
            "<p>Runs of <code>dendritic continual</code>: metrics in percentage points, mean ± sample "
            "s.d. over seeds (definitions in docs/continual.md).</p>",
        ]
        for section in content.continual:
            parts += [f"<h3>{_e(section.title)}</h3>", _continual_table(section.rows)]
            parts += [_figure_html(fig) for fig in section.figures]
    parts.append('<h2 id="skipped">Not drawn</h2>')
    if content.skipped or content.notes:
        parts.append('<ul class="skipped">')
        parts += [f"<li>{_e(reason)}</li>" for reason in content.skipped.values()]
        parts += [f"<li>note: {_e(note)}</li>" for note in content.notes]
        parts.append("</ul>")
    else:
        parts.append("<p>Every figure was drawn.</p>")
    parts.append('<h2 id="environment">Environment</h2><table class="data"><tbody>')
    parts += [f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in versions.items()]
    parts.append(f"<tr><td>generated (UTC)</td><td>{_e(stamp)}</td></tr></tbody></table>")
    parts.append(f"<script>{_SELF_CHECK}</script>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
