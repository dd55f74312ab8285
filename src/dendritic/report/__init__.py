"""`dendritic report`: one self-contained HTML page about a results store.

Figures are embedded as base64 PNGs, styles and the one tiny self-check script are inline, and
nothing links outside the file, so it opens the same in any browser, offline, or as an e-mail
attachment.
"""

from dendritic.report.html import build_report, render_report, run_counts

__all__ = ["build_report", "render_report", "run_counts"]
