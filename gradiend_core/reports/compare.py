"""Report of compare (a suite's comparison): a heatmap per similarity matrix (ungrouped and per grouping),
the top-k overlap heatmap, a top-k Venn diagram for 2 or 3 GRADIENDs and the cross-encoding heatmaps,
all drawn from the stored tables (plots_compare); the matrices as table artifacts; the suite report
linking every pair's own report artifacts."""
from __future__ import annotations

from pathlib import Path

from ..suite import pair_label
from .images import md_image, report_file
from .markdown import artifact_key, fmt, header, info, link, main_key, md_table, out, read_json, spec

CODE = ("gradiend_core.reports.compare", "gradiend_core.plots_compare")
EXTRA: tuple[str, ...] = ()
VENN_PART = "decoder-weight"
ENCODINGS = ("cross", "pairwise", "anchor")


def plot_names(summary: dict) -> list[tuple[str, dict]]:
    """(file name, what it shows) of every plot, from the comparison's summary."""
    cfg = summary["config"]
    out = [(f"similarity_{m}_{by}.png", {"measure": m, "group_by": by})
           for m in cfg["measures"] for by in ("none", *cfg["group_by"])]
    if 2 <= len(summary["gradiends"]) <= 3:
        out.append((f"topk_venn_{VENN_PART}.png", {"venn": VENN_PART}))
    if "cross_encoding_diagonal" in summary:
        out += [(f"encoding_{k}.png", {"encoding": k}) for k in ENCODINGS]
    return out


def draw(m: dict, dest: Path) -> dict:
    from ..compare import read_comparison
    from .. import plots_compare as pc

    tables, summary = read_comparison(out(m)), read_json(out(m) / "summary.json")
    names = plot_names(summary)
    for name, what in names:
        if "venn" in what:
            pc.plot_topk_venn(tables["topk"], dest / name, part=what["venn"])
        elif "encoding" in what:
            table = tables[{"cross": "cross_encoding", "pairwise": "pairwise_encoding",
                            "anchor": "anchor_aligned"}[what["encoding"]]]
            pc.plot_encoding_heatmap(table, dest / name, kind=what["encoding"])
        elif what["measure"] == "topk_overlap":
            pc.plot_topk_overlap_heatmap(tables["similarity"], dest / name, group_by=what["group_by"])
        else:
            pc.plot_similarity_heatmap(tables["similarity"], dest / name, what["measure"], what["group_by"])
    return {"plots": [n for n, _ in names]}


def matrix_rows(matrix: dict) -> list[dict]:
    """{row: {col: value}} (summary.json) as table rows: one per GRADIEND, a column per GRADIEND."""
    return [{"gradiend": r, **{c: fmt(v) for c, v in cols.items()}} for r, cols in matrix.items()]


def pair_links(m: dict, exp: str) -> list[dict]:
    """One row per pair: its selected GRADIEND's and its encoder evaluation's report artifacts."""
    rows = []
    for pid, used in info(m)["pairs"].items():
        keys = [artifact_key(pair_label(exp, pid), used[r]["stage"], used[r].get("suffix")) for r in ("model", "encoder")]
        rows.append({"pair": pid, "GRADIEND": link(keys[0]), "encoder evaluation": link(keys[1]),
                     "kept dims": info(m)["kept_dims"].get(pid)})
    return rows


def artifacts(m: dict, report: dict | None, exp: str) -> list[dict]:
    summary = read_json(out(m) / "summary.json")
    tables = [spec("table", artifact_key(exp, "compare", measure), matrix_rows(matrix),
                   f"{measure} between the suite's GRADIENDs") for measure, matrix in summary["similarity"].items()]
    diag = [{"pair": k, "diagonal": v} for k, v in (summary.get("cross_encoding_diagonal") or {}).items()]
    plots = [md_image(report_file(report, name), name.removesuffix(".png")) for name, _ in plot_names(summary)]
    md = (header(m, "Suite comparison") + "\n**Pairs** (each pair's own reports)\n\n" + md_table(pair_links(m, exp))
          + "\n\n**Matrices** (table artifacts): "
          + ", ".join(link(artifact_key(exp, "compare", s)) for s in summary["similarity"])
          + ("\n\n**Cross-encoding**: mean encoding of each GRADIEND's +1 class\n\n" + md_table(diag) if diag else "")
          + "\n\n" + "\n\n".join(plots))
    return [spec("markdown", main_key(m, exp), md, f"comparison of {len(summary['gradiends'])} GRADIENDs")] + tables
