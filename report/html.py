"""`make report`: the sweep as ONE self-contained HTML file (inline CSS and a small inline script; no
server, no network) — a summary bar, the reasons cells are pending or failed, and for each model x dataset
a grid of cells coloured by state (see report/layout.py for the placement), every cell searchable.

Every text that comes from the user or the cluster (cell names, hparam values, node names, reasons) goes
through `html.escape`; the script reads the page, never data pasted into it.
"""
import html
import time

from toolbox.core.console import human_duration, plural
from toolbox.report.layout import blocks
from toolbox.report.summary import ORDER, progress, reason_groups, state_counts

CSS = """
:root{--ok:#2f9e44;--ok-bg:#d3f9d8;--bad:#e03131;--bad-bg:#ffe3e3;--run:#1c7ed6;--run-bg:#d0ebff;
--wait:#e8a100;--wait-bg:#fff3bf;--int:#7048e8;--int-bg:#e5dbff;--idle:#adb5bd;--idle-bg:#f1f3f5}
*{box-sizing:border-box}
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#212529;background:#fff}
header{position:sticky;top:0;background:#fff;border-bottom:1px solid #dee2e6;padding:12px 20px;z-index:2}
h1{font-size:20px;margin:0 0 2px}h2{font-size:16px;margin:18px 0 6px}
.meta{color:#6c757d;margin:0 0 8px}
.bar{display:flex;height:18px;border-radius:4px;overflow:hidden;background:var(--idle-bg);max-width:900px}
.bar span{display:block;height:100%}
.legend{list-style:none;padding:0;margin:6px 0;display:flex;flex-wrap:wrap;gap:6px 14px}
.legend button{border:0;background:none;padding:0;font:inherit;cursor:pointer;color:inherit}
.sw{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:5px;vertical-align:-1px}
.search{display:flex;gap:10px;align-items:center;margin-top:6px}
#q{width:min(520px,70vw);padding:6px 9px;border:1px solid #ced4da;border-radius:4px;font:inherit}
#hits{color:#495057}
main{padding:4px 20px 30px}
.attention ul{margin:4px 0;padding-left:20px}
.attention details{margin:4px 0}
.attention table{border-collapse:collapse;font-size:12px}
.attention td{padding:1px 10px 1px 0;vertical-align:top}
.block{border-top:1px solid #e9ecef;margin-top:14px}
.block h2 small{font-weight:normal;color:#6c757d;margin-left:8px}
.fixed{color:#6c757d;margin:0 0 6px;font-size:12px}
.tables{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
figure{margin:0}figcaption{font-size:12px;color:#495057;margin-bottom:3px;font-weight:600}
table.g{border-collapse:separate;border-spacing:3px}
table.g th{font-size:12px;font-weight:600;color:#495057;padding:2px 5px;white-space:nowrap}
table.g thead th{text-align:center}table.g tbody th{text-align:right}
th.corner{color:#868e96;font-weight:normal}
td{padding:0;vertical-align:top}
.c{width:118px;min-height:58px;border-radius:4px;border-left:4px solid;padding:3px 6px;font-size:11px;
line-height:1.3;overflow:hidden;margin-bottom:2px}
.c .st{font-weight:600;font-size:12px;display:block}
.c span{display:block;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.c .r{color:#862e2e}
.s-succeeded{background:var(--ok-bg);border-color:var(--ok)}
.s-failed{background:var(--bad-bg);border-color:var(--bad)}
.s-running{background:var(--run-bg);border-color:var(--run)}
.s-pending{background:var(--wait-bg);border-color:var(--wait)}
.s-interrupted{background:var(--int-bg);border-color:var(--int)}
.s-deleting,.s-not-submitted,.s-not-run,.s-other{background:var(--idle-bg);border-color:var(--idle);color:#495057}
.bar .s-succeeded,.sw.s-succeeded{background:var(--ok)}.bar .s-failed,.sw.s-failed{background:var(--bad)}
.bar .s-running,.sw.s-running{background:var(--run)}.bar .s-pending,.sw.s-pending{background:var(--wait)}
.bar .s-interrupted,.sw.s-interrupted{background:var(--int)}
.bar .s-deleting,.bar .s-not-submitted,.bar .s-not-run,.bar .s-other,.sw.s-deleting,.sw.s-not-submitted,
.sw.s-not-run,.sw.s-other{background:var(--idle)}
.c.miss{opacity:.15}.c.hit{outline:2px solid #212529;outline-offset:1px}
.none{display:none}
footer{color:#adb5bd;font-size:12px;padding:0 20px 20px}
"""

# Filters the cells by the search box (every word must occur in a cell's text) and hides tables and
# blocks left without a match; a legend entry searches for its state.
SCRIPT = """
(function(){
var q=document.getElementById('q'),hits=document.getElementById('hits');
var cells=[].slice.call(document.querySelectorAll('.c'));
function some(sel){[].forEach.call(document.querySelectorAll(sel),function(box){
box.classList.toggle('none',!box.querySelector('.c:not(.miss)'));});}
function run(){var words=q.value.toLowerCase().split(/\\s+/).filter(Boolean),n=0;
cells.forEach(function(c){var text=c.getAttribute('data-q'),ok=words.every(function(w){return text.indexOf(w)>=0;});
c.classList.toggle('miss',!ok);c.classList.toggle('hit',ok&&words.length>0);if(ok)n++;});
some('figure.t');some('section.block');
hits.textContent=words.length?n+' of '+cells.length+' cells match':cells.length+' cells';}
q.addEventListener('input',run);
[].forEach.call(document.querySelectorAll('.legend button'),function(b){b.addEventListener('click',function(){
q.value=q.value==='state:'+b.getAttribute('data-state')?'':'state:'+b.getAttribute('data-state');run();});});
run();})();
"""


def esc(value):
    return html.escape("" if value is None else str(value), quote=True)


def state_class(state):
    return "s-" + (state.replace(" ", "-") if state in ORDER else "other")


def duration_text(record):
    seconds = record.get("seconds")
    return human_duration(seconds) if isinstance(seconds, (int, float)) and seconds >= 0 else ""


def cell_html(record):
    """One cell: coloured by state, with duration, node, GPU and (failed/pending) the short reason; the
    tooltip has the full name and details; data-q is the text the search box looks in."""
    state, reason = record["state"], record.get("reason") or ""
    facts = [duration_text(record), record.get("node") or "", record.get("gpu") or ""]
    hparams = " ".join(f"{k}={v}" for k, v in (record.get("hparams") or {}).items())
    detail = record.get("detail") or ""
    tooltip = [record["name"], state + (f": {reason}" if reason else ""), detail if detail != reason else "",
               " · ".join(fact for fact in facts if fact), hparams,
               f"runs in the shared job {record['job']}" if record.get("job") else ""]
    search = " ".join([record["name"], f"state:{state}", state, hparams, reason, detail,
                       *facts, record.get("job") or ""]).lower()
    parts = [f'<span class="st">{esc(state)}</span>']
    parts += [f'<span class="{cls}">{esc(fact)}</span>' for cls, fact in zip("dng", facts) if fact]
    if reason:
        parts.append(f'<span class="r">{esc(reason)}</span>')
    title = "&#10;".join(esc(line) for line in tooltip if line)
    return (f'<div class="c {state_class(state)}" data-name="{esc(record["name"])}" data-state="{esc(state)}" '
            f'data-q="{esc(search)}" title="{title}">{"".join(parts)}</div>')


def table_html(block, table):
    corner = " · ".join(part for part in (f"{block.row_key} ↓" if block.row_key else "",
                                          f"{block.column_key} →" if block.column_key else "") if part)
    head = "".join(f"<th>{esc(value)}</th>" for value in table.columns) if block.column_key else "<th></th>"
    rows = []
    for row in table.rows:
        tds = "".join(f"<td>{''.join(cell_html(r) for r in table.cells.get((row, column), []))}</td>"
                      for column in table.columns)
        rows.append(f"<tr><th>{esc(row)}</th>{tds}</tr>")
    caption = f"<figcaption>{esc(table.caption)}</figcaption>" if table.caption else ""
    return (f'<figure class="t">{caption}<table class="g"><thead><tr><th class="corner">{esc(corner)}</th>'
            f'{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></figure>')


def block_html(block):
    counts = ", ".join(f"{n} {state}" for state, n in state_counts(block.records).items())
    fixed = ", ".join(f"{key}={value}" for key, value in block.fixed.items())
    name = " × ".join(esc(part) for part in (block.model, block.dataset) if part) or "cells"
    return (f'<section class="block"><h2>{name}'
            f'<small>{esc(plural(len(block.records), "cell"))}: {esc(counts)}</small></h2>'
            + (f'<p class="fixed">same in every cell: {esc(fixed)}</p>' if fixed else "")
            + f'<div class="tables">{"".join(table_html(block, t) for t in block.tables)}</div></section>')


def summary_html(records):
    counts = state_counts(records)
    total = max(len(records), 1)
    segments = "".join(f'<span class="{state_class(s)}" style="width:{100 * n / total:.3f}%" '
                       f'title="{esc(plural(n, "cell"))} {esc(s)}"></span>' for s, n in counts.items())
    legend = "".join(f'<li><button type="button" data-state="{esc(s)}"><span class="sw {state_class(s)}"></span>'
                     f'{n} {esc(s)}</button></li>' for s, n in counts.items())
    done, failed, all_cells = progress(records)
    percent = f" ({100 * done / all_cells:.0f}%)" if all_cells else ""
    return (f'<div class="bar" id="summary">{segments}</div><ul class="legend">{legend}</ul>'
            f'<p class="meta" id="progress">{done} of {esc(plural(all_cells, "cell"))} done{percent}'
            + (f", {failed} failed" if failed else "") + "</p>")


def attention_html(records):
    parts = []
    for state, heading in (("failed", "Failed"), ("pending", "Pending")):
        groups = reason_groups(records, state)
        if not groups:
            continue
        items = "".join(f"<li><b>{esc(plural(n, 'cell'))}</b>: {esc(reason)}</li>" for n, reason in groups)
        parts.append(f'<h2>{heading}</h2><ul class="reasons-{state}">{items}</ul>')
        if state == "failed":
            rows = "".join(f"<tr><td>{esc(r['name'])}</td><td>{esc(r.get('detail') or r.get('reason'))}</td></tr>"
                           for r in records if r["state"] == "failed")
            parts.append(f"<details><summary>every failed cell</summary><table>{rows}</table></details>")
    return f'<section class="attention">{"".join(parts)}</section>' if parts else ""


def render(records, title, source, now=None):
    """The whole page. `title` names the sweep (the project), `source` says where the states come from."""
    now = time.time() if now is None else now
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(now))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{esc(title)}</h1><p class=\"meta\" id=\"source\">{esc(source)} · written {esc(stamp)}</p>"
            f"{summary_html(records)}"
            "<div class=\"search\"><input id=\"q\" type=\"search\" autocomplete=\"off\" "
            "placeholder=\"Search cells: name, hparam value, state, node, GPU, reason\" aria-label=\"Search cells\">"
            "<span id=\"hits\"></span></div></header>"
            f"<main>{attention_html(records)}{''.join(block_html(b) for b in blocks(records))}</main>"
            "<footer>Written by Kube Toolbox (make report). One file: no server, nothing loaded from the network."
            f"</footer><script>{SCRIPT}</script></body></html>\n")
