"""Artifacts of an evaluation: JSON + markdown tables, PNG image grids and plots. Only tasks and launch/
import this package."""
from jaxdiff.report.images import grid, save_grid, save_png
from jaxdiff.report.plots import plot_bars, plot_certified, plot_panels, plot_strips, save_figure
from jaxdiff.report.tables import markdown_table, write_report
