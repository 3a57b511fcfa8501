//! What a run produces: `summary.json`, the time-series CSV, SVG plots and sweep tables.
