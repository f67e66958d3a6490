"""Reports: JSON + markdown tables, image grids, plots, progress bars."""
from jaxdiff.report.images import grid, save_grid, save_png
from jaxdiff.report.plots import plot_panels
from jaxdiff.report.progress import progress
from jaxdiff.report.tables import markdown_table, write_report
