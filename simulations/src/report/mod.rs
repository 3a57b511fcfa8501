//! What a run produces: `summary.json`, the time-series CSV, SVG plots and sweep tables.
//!
//! [`summary`] holds the serde types of `summary.json`, [`series`] the sampled
//! time series and its CSV, [`plots`] the SVG charts drawn from that series,
//! and [`table`] the aggregation of a parameter sweep's outcomes into
//! `sweep.csv`, `sweep.md` and `sweep.svg`. The lower bound the download times
//! are compared against lives in [`crate::bound`].

pub mod nodes;
pub mod plots;
pub mod series;
pub mod summary;
pub mod table;

pub use nodes::{write_nodes_csv, NodeRecord};
pub use plots::{write_plots, PlotError};
pub use series::{Sample, TimeSeries, WriteCsvError};
pub use summary::{
    percentile, BadReleaseSummary, Percentiles, ReadSummaryError, Summary, WanSummary, WaveSummary,
    WriteSummaryError,
};
pub use table::{
    aggregate, write_sweep_table, Metric, Stat, SweepRow, SweepTable, WriteTableError,
};
