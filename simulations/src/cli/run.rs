//! `waveguard-sim run scenario.toml --out DIR`: one run, or a sweep across
//! parameter values and seeds when the scenario has a `[sweep]` table. A single
//! run writes `summary.json`, `timeseries.csv`, `nodes.csv` and the SVG plots; a sweep writes
//! every run's summary under `runs/` and the aggregated `sweep.csv`, `sweep.md`
//! and `sweep.svg`. Every failure names the seed that reproduces it.

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::{Path, PathBuf};
use waveguard_sim::report::{write_nodes_csv, write_plots, write_sweep_table, Summary};
use waveguard_sim::run::{run, RunOutput};
use waveguard_sim::scenario::Scenario;
use waveguard_sim::sweep::{expand, run_all, SweepPoint};

/// Arguments of `run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The scenario file (TOML; see docs/simulator.md).
    pub scenario: PathBuf,
    /// Where to write the results (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Override the scenario's seed (single runs only).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run twice and fail unless both runs give the same event-trace hash.
    #[arg(long)]
    pub check_determinism: bool,
    /// Threads for sweeps (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Runs the `run` subcommand.
pub fn main(a: &RunArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&a.scenario)
        .with_context(|| format!("reading scenario {}", a.scenario.display()))?;
    let name = a.scenario.display().to_string();
    let mut table: toml::Table = text
        .parse()
        .with_context(|| format!("scenario {name} is not valid TOML"))?;
    if let Some(seed) = a.seed {
        if table.contains_key("sweep") {
            bail!("--seed applies to single runs; a sweep lists its seeds in [sweep]");
        }
        table.insert("seed".into(), toml::Value::Integer(seed as i64));
    }
    let points = expand(&table).with_context(|| format!("scenario {name}: [sweep]"))?;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("creating output directory {}", a.out.display()))?;
    if table.contains_key("sweep") {
        sweep(a, &name, points)
    } else {
        let point = points
            .into_iter()
            .next()
            .context("the scenario expanded to no run")?;
        single(a, &name, point)
    }
}

fn scenario_of(point: &SweepPoint, name: &str) -> anyhow::Result<Scenario> {
    Ok(Scenario::from_table(point.doc.clone(), name)?)
}

fn single(a: &RunArgs, name: &str, point: SweepPoint) -> anyhow::Result<()> {
    let scenario = scenario_of(&point, name)?;
    let seed = scenario.seed;
    let bar =
        ProgressBar::with_draw_target(Some(scenario.duration_s), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} simulated s {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(format!("seed {seed}"));
    let first = run(&scenario, Some(&bar)).with_context(|| format!("run failed (seed {seed})"))?;
    bar.finish_and_clear();
    write_outputs(&first, &a.out)?;
    print_summary(&first.summary, &a.out);
    if a.check_determinism {
        let second =
            run(&scenario, None).with_context(|| format!("second run failed (seed {seed})"))?;
        if second.summary.trace_hash != first.summary.trace_hash {
            bail!(
                "not deterministic (seed {seed}): trace hash {} then {}",
                first.summary.trace_hash,
                second.summary.trace_hash
            );
        }
        println!("determinism: a second run gave the same trace hash");
    }
    Ok(())
}

fn write_outputs(out: &RunOutput, dir: &Path) -> anyhow::Result<()> {
    out.summary.write(dir.join("summary.json"))?;
    out.series.write_csv(dir.join("timeseries.csv"))?;
    write_nodes_csv(&out.nodes, dir.join("nodes.csv"))?;
    write_plots(&out.series, dir)?;
    Ok(())
}

fn print_summary(s: &Summary, dir: &Path) {
    let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    let engines = s
        .engines
        .map_or(String::new(), |n| format!(" ({n} run as engines)"));
    println!(
        "{}: seed {}, {} endpoints{engines}, {:.1} MiB release, {:.0} simulated s",
        s.scenario,
        s.seed,
        s.endpoints,
        s.release_bytes as f64 / 1048576.0,
        s.simulated_seconds
    );
    println!(
        "download: {} of {} done, p50 {} s, p99 {} s, max {} s; lower bound {:.1} s ({:?}), ratio {}",
        s.download.count,
        s.endpoints,
        f(s.download.p50),
        f(s.download.p99),
        f(s.download.max),
        s.lower_bound.seconds,
        s.lower_bound.binding,
        s.lower_bound
            .ratio
            .map_or("-".to_string(), |r| format!("{r:.3}"))
    );
    println!(
        "{:<10} {:>8} {:>9} {:>10} {:>10} {:>10}",
        "wave", "eligible", "installed", "p50 s", "p99 s", "max s"
    );
    for w in &s.waves {
        println!(
            "{:<10} {:>8} {:>9} {:>10} {:>10} {:>10}",
            w.name,
            w.eligible,
            w.installed,
            f(w.completion.p50),
            f(w.completion.p99),
            f(w.completion.max)
        );
    }
    if let Some(b) = &s.bad_release {
        println!(
            "bad release: {} installed (blast radius {:.2}%), {} failed; first failure {} s, halt {} s later, 99.9% knew {} s after the failure",
            b.installed_bad,
            b.blast_radius * 100.0,
            b.failed,
            f(b.first_failure_s),
            f(b.failure_to_halt_s),
            f(b.failure_to_999_knowing_s)
        );
    }
    if !s.faults.is_empty() {
        let faults: Vec<String> = s.faults.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("faults: {}", faults.join(", "));
    }
    println!(
        "{} events in {:.1} s wall ({:.0} events/s), peak memory {} MiB",
        s.events,
        s.wall_seconds,
        s.events_per_second,
        s.peak_memory_bytes
            .map_or("-".to_string(), |b| format!("{}", b >> 20))
    );
    println!("trace hash {}", s.trace_hash);
    println!("wrote {}", dir.display());
}

fn sweep(a: &RunArgs, name: &str, points: Vec<SweepPoint>) -> anyhow::Result<()> {
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let runs = a.out.join("runs");
    std::fs::create_dir_all(&runs).with_context(|| format!("creating {}", runs.display()))?;
    let outcomes = run_all(points, threads, |p| {
        let scenario = scenario_of(p, name)?;
        let out = run(&scenario, None)?;
        if a.check_determinism {
            let again = run(&scenario, None)?;
            if again.summary.trace_hash != out.summary.trace_hash {
                bail!("not deterministic (seed {})", p.seed);
            }
        }
        let file = runs.join(format!("{}.json", sanitize(&p.label())));
        out.summary.write(&file)?;
        Ok(out.summary)
    });
    let (table, files) = write_sweep_table(&outcomes, &a.out)?;
    println!("{}", table.to_markdown());
    let failed: Vec<&String> = outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().err())
        .collect();
    for f in &failed {
        eprintln!("run failed: {f}");
    }
    for f in files {
        println!("wrote {}", f.display());
    }
    if !failed.is_empty() {
        bail!("{} of {} runs failed", failed.len(), outcomes.len());
    }
    Ok(())
}

fn sanitize(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
