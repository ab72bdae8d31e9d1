"""results dict -> Markdown (PNG links) and a self-contained HTML page (images and audio inline)."""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from pathlib import Path


def pct(x, std=None) -> str:
    if x is None or x != x:  # None or NaN
        return "–"
    return f"{100 * x:.1f} %" + (f" ± {100 * std:.1f}" if std is not None and std == std else "")


def _comparison_rows(results: dict) -> list[list[str]]:
    rows = []
    for r in results["comparison"]:
        rows.append([r["model"], pct(r["train_acc_mean"]), pct(r["val_acc_mean"], r["val_acc_std"]),
                     pct(r["test_acc_mean"], r["test_acc_std"]), pct(r["ensemble_test_acc"]),
                     f"{r['params_trainable']:,}", f"{r['macs_per_5s_clip'] / 1e6:,.0f} M", str(r["folds"])])
    return rows


COMPARISON_HEADER = ["model", "train acc", "val acc (mean ± std)", "test acc (mean ± std over fold models)",
                     "test acc, ensemble", "parameters", "MACs / 5-s clip", "folds"]
FOLD_HEADER = ["fold model", "train acc", "val acc", "test acc", "selected", "train time", "inference / clip"]
CLASS_HEADER = ["class", "precision", "recall", "F1", "support", "AUC"]


def _fold_rows(m: dict) -> list[list[str]]:
    return [[name, pct(f["train_acc"]), pct(f["val_acc"]), pct(f["test_acc"]), str(f.get("selected") or ""),
             f"{f['train_time_s']:.0f} s", f"{f['inference_ms_per_clip']:.1f} ms" if f.get("inference_ms_per_clip") else "–"]
            for name, f in m["per_fold"].items()]


def _class_rows(m: dict) -> list[list[str]]:
    tm = m["test_metrics"]
    rows = [[c, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", str(v["support"]),
             f"{tm['auc']['per_class'].get(c, float('nan')):.3f}"] for c, v in tm["per_class"].items()]
    for avg in ("macro", "weighted"):
        v = tm[avg]
        auc = f"{tm['auc']['macro']:.3f}" if avg == "macro" else ""
        rows.append([f"{avg} avg", f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", str(tm["n"]), auc])
    return rows


def _facts(m: dict) -> list[tuple[str, str]]:
    facts = [("protocol", m["protocol"]), ("test accuracy (mean ± std over fold models)", pct(m["test_acc_mean"], m["test_acc_std"]))]
    if m.get("ensemble_test_acc") is not None:
        facts.append(("test accuracy of the averaged fold models", pct(m["ensemble_test_acc"])))
    facts += [
        ("train accuracy (mean)", pct(m["train_acc_mean"])), ("validation accuracy (mean)", pct(m["val_acc_mean"], m["val_acc_std"])),
        ("trainable / non-trainable parameters", f"{m['params_trainable']:,} / {m['params_non_trainable']:,}"),
        ("multiply-accumulates per 5-s clip", f"{m['macs_per_5s_clip']:,}"),
        ("training time", f"{m['train_time_s_total']:.0f} s in all, {m['train_time_s_per_fold']:.0f} s per fold model"),
        ("inference time per clip", f"{m['inference_ms_per_clip']:.1f} ms"),
    ]
    if "test_metrics" in m:
        tm = m["test_metrics"]
        facts += [("detailed metrics computed on", m["evaluated_on"]),
                  ("micro / macro AUC", f"{tm['auc']['micro']:.3f} / {tm['auc']['macro']:.3f}")]
    return facts


# --------------------------------------------------------------------------- markdown


def _md_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(results: dict) -> str:
    out = [f"# {results['title']}", "", f"Generated {results['generated']}.", ""]
    if "data" in results:
        d = results["data"]
        out += ["## Data", "", f"{d['clips']} clips, {d['classes']} classes, {len(d['per_fold'])} folds "
                f"({d['format']} layout, {d['root']}); durations {d['duration_s']['min']:.2f}-{d['duration_s']['max']:.2f} s "
                f"(mean {d['duration_s']['mean']:.2f} s); bad files: {len(d['bad_files'])}.", ""]
        out += [f"![{k}](figures/{v})" for k, v in d["figures"].items()] + [""]
    out += ["## Comparison", "", _md_table(COMPARISON_HEADER, _comparison_rows(results)), "",
            f"![comparison](figures/{results['comparison_figure']})", ""]
    for label, m in results["models"].items():
        out += [f"## {label}", "", m["description"], ""]
        out += [f"- {k}: {v}" for k, v in _facts(m)] + [""]
        out += [_md_table(FOLD_HEADER, _fold_rows(m)), "", f"![curves](figures/{m['figures']['curves']})", ""]
        if "test_metrics" in m:
            out += [_md_table(CLASS_HEADER, _class_rows(m)), "", "```", m["test_metrics"]["classification_report"], "```", ""]
            out += [f"![{k}](figures/{m['figures'][k]})" for k in ("confusion", "f1", "roc")] + [""]
        if m.get("attention"):
            out += ["### Attention maps", ""] + [f"![attention {a['class']}](figures/{a['figure']})" for a in m["attention"]] + [""]
        if m.get("mistakes"):
            out += ["### Listen to the mistakes", ""]
            for e in m["mistakes"]:
                top = ", ".join(f"{t['class']} {t['p']:.2f}" for t in e["top3"])
                out.append(f"- **{e['true']}** heard as **{e['predicted']}** (top 3: {top}) `{Path(e['path']).name}`"
                           + (f" [audio](figures/{e['audio_file']})" if e.get("audio_file") else ""))
                if e.get("spectrogram"):
                    out.append(f"  ![spectrogram](figures/{e['spectrogram']})")
            out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------- html

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330;line-height:1.45}
main{max-width:1150px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:28px;margin:8px 0 4px} h2{font-size:22px;border-bottom:2px solid #dfe3ea;padding-bottom:4px;margin-top:40px}
h3{font-size:17px;margin-top:26px} .muted{color:#667085;font-size:14px}
nav{background:#1d2330;color:#fff;padding:10px 28px;position:sticky;top:0;z-index:2;font-size:14px}
nav a{color:#cfd8ff;margin-right:16px;text-decoration:none}
table{border-collapse:collapse;margin:10px 0 18px;background:#fff;font-size:14px;box-shadow:0 1px 2px #0001}
th,td{padding:6px 10px;border-bottom:1px solid #e8ebf0;text-align:right} th{background:#eef1f6;text-align:center}
td:first-child,th:first-child{text-align:left} tr.best td{background:#e9f7ef;font-weight:600}
img{max-width:100%;background:#fff;border-radius:6px;box-shadow:0 1px 3px #0002;margin:8px 0}
.facts td{text-align:left} pre{background:#fff;padding:12px;overflow:auto;font-size:13px;border-radius:6px}
.mistake{display:grid;grid-template-columns:minmax(260px,1fr) 1.4fr;gap:14px;align-items:center;background:#fff;
 padding:10px 14px;border-radius:8px;margin:10px 0;box-shadow:0 1px 2px #0001}
.mistake img{box-shadow:none;margin:0} audio{width:100%}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:12px}
"""


def _h(text) -> str:
    return html.escape(str(text))


def _html_table(header, rows, best_col: int | None = None) -> str:
    best = None
    if best_col is not None and rows:
        def key(r):
            try:
                return float(r[best_col].split()[0])
            except ValueError:
                return -1.0
        best = max(range(len(rows)), key=lambda i: key(rows[i]))
    head = "".join(f"<th>{_h(c)}</th>" for c in header)
    body = "".join(
        f"<tr{' class=best' if i == best else ''}>" + "".join(f"<td>{_h(c)}</td>" for c in r) + "</tr>"
        for i, r in enumerate(rows))
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(results: dict, fig_dir: Path, *, wav_base64: Callable[[Path], str]) -> str:
    def img(name: str, alt: str = "") -> str:
        data = base64.b64encode((fig_dir / name).read_bytes()).decode()
        return f'<img alt="{_h(alt)}" src="data:image/png;base64,{data}">'

    nav = ['<a href="#comparison">Comparison</a>']
    parts = [f"<h1>{_h(results['title'])}</h1><p class=muted>Generated {_h(results['generated'])}</p>"]
    if "data" in results:
        d = results["data"]
        nav.insert(0, '<a href="#data">Data</a>')
        parts.append(f"<h2 id=data>Data</h2><p>{d['clips']} clips, {d['classes']} classes, {len(d['per_fold'])} folds "
                     f"({_h(d['format'])} layout, <code>{_h(d['root'])}</code>); durations "
                     f"{d['duration_s']['min']:.2f}–{d['duration_s']['max']:.2f} s (mean {d['duration_s']['mean']:.2f} s); "
                     f"bad files: {len(d['bad_files'])}.</p>")
        parts.append(img(d["figures"]["counts"], "counts") + img(d["figures"]["durations"], "durations")
                     + "<h3>One example per class</h3>" + img(d["figures"]["examples"], "examples"))
    parts.append("<h2 id=comparison>Comparison</h2><p class=muted>Accuracies are clip-level; the best test "
                 "accuracy is highlighted. Validation picks checkpoints; the test fold is only read at the end.</p>")
    parts.append(_html_table(COMPARISON_HEADER, _comparison_rows(results), best_col=3))
    parts.append(img(results["comparison_figure"], "comparison curves"))
    for label, m in results["models"].items():
        anchor = m["slug"]
        nav.append(f'<a href="#{anchor}">{_h(m["preset"])}</a>')
        parts.append(f"<h2 id={anchor}>{_h(label)}</h2><p class=muted>{_h(m['description'])}</p>")
        parts.append("<table class=facts>" + "".join(f"<tr><td>{_h(k)}</td><td>{_h(v)}</td></tr>" for k, v in _facts(m)) + "</table>")
        parts.append(_html_table(FOLD_HEADER, _fold_rows(m)))
        parts.append(img(m["figures"]["curves"], "curves"))
        if "test_metrics" in m:
            parts.append("<h3>Per-class results</h3>" + _html_table(CLASS_HEADER, _class_rows(m)))
            parts.append(img(m["figures"]["confusion"], "confusion"))
            parts.append("<div class=grid2>" + img(m["figures"]["f1"], "F1") + img(m["figures"]["roc"], "ROC") + "</div>")
            parts.append(f"<details><summary>classification report</summary><pre>{_h(m['test_metrics']['classification_report'])}</pre></details>")
        if m.get("attention"):
            parts.append("<h3>Attention maps</h3><p class=muted>What the CLS token attends to in the last block, "
                         "per head, over the clip's log-mel spectrogram.</p>")
            parts += [img(a["figure"], f"attention {a['class']}") for a in m["attention"]]
        if m.get("mistakes"):
            parts.append(f"<h3>Listen to the mistakes</h3><p class=muted>Misclassified test clips, most confident "
                         f"errors first (at most {len(m['mistakes'])}).</p>")
            for e in m["mistakes"]:
                top = "<br>".join(f"{_h(t['class'])}: {t['p']:.2f}" for t in e["top3"])
                audio = (f'<audio controls preload=none src="data:audio/wav;base64,{wav_base64(fig_dir / e["audio_file"])}"></audio>'
                         if e.get("audio_file") else "")
                spec = img(e["spectrogram"], "spectrogram") if e.get("spectrogram") else ""
                parts.append(f"<div class=mistake><div><b>{_h(e['true'])}</b> heard as <b>{_h(e['predicted'])}</b>"
                             f"<br><span class=muted>{_h(Path(e['path']).name)}</span><br>{top}<br>{audio}</div>{spec}</div>")
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content='width=device-width'>"
            f"<title>{_h(results['title'])}</title><style>{CSS}</style></head><body><nav>{''.join(nav)}</nav>"
            f"<main>{''.join(parts)}</main></body></html>")
