//! Parameter sweeps: expanding a scenario document's `[sweep]` table into one
//! concrete document per combination of parameter values and seeds, and
//! running those points in parallel.
//!
//! A scenario TOML document may contain:
//!
//! ```toml
//! [sweep]
//! seeds = [1, 2, 3]                                     # optional
//! [[sweep.params]]                                      # at most two
//! path = "sites.0.upload_mbit"
//! values = [1, 2, 4]
//! ```
//!
//! `path` is a dotted path into the document: each segment names a key of a
//! table, or, when the value reached so far is an array (including an array
//! of tables), a zero-based index. Every segment must already exist: a sweep
//! replaces values, it never adds keys, so a misspelt path is an error rather
//! than an ignored setting. [`expand`] returns the cartesian product
//! `values₁ × values₂ × seeds` (first parameter outermost, seeds innermost);
//! [`run_all`] runs the points on a rayon pool and returns their outcomes in
//! the same order.

use std::panic::{catch_unwind, AssertUnwindSafe};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use toml::{Table, Value};

use crate::report::summary::Summary;

/// The most parameters a sweep may vary.
pub const MAX_PARAMS: usize = 2;

/// The seed of a document that names none.
pub const DEFAULT_SEED: u64 = 1;

/// One concrete run of a sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepPoint {
    /// The swept parameters' paths and the values this point sets, in the
    /// order of `[[sweep.params]]`.
    pub params: Vec<(String, Value)>,
    /// The seed of this point.
    pub seed: u64,
    /// The scenario document without `[sweep]`, with each parameter set at its
    /// path and the top-level `seed` set to `seed`.
    pub doc: Table,
}

impl SweepPoint {
    /// A short human-readable label such as `sites.0.upload_mbit=2 seed=3`.
    pub fn label(&self) -> String {
        let mut parts: Vec<String> = self
            .params
            .iter()
            .map(|(path, v)| format!("{path}={}", value_text(v)))
            .collect();
        parts.push(format!("seed={}", self.seed));
        parts.join(" ")
    }
}

/// A value as plain text: strings without quotes, everything else in TOML
/// syntax.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The result of running one [`SweepPoint`].
#[derive(Clone, Debug)]
pub struct SweepOutcome {
    /// The point's parameters.
    pub params: Vec<(String, Value)>,
    /// The point's seed.
    pub seed: u64,
    /// The run's summary, or its error message (which names the seed).
    pub result: Result<Summary, String>,
}

/// Why [`expand`] rejected a document.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SweepError {
    /// `sweep` is present but is not a table.
    #[error("`sweep` must be a table")]
    SweepNotTable,
    /// `[sweep]` has a key other than `seeds` and `params`.
    #[error("unknown key `sweep.{0}` (expected `seeds` or `params`)")]
    UnknownSweepKey(String),
    /// A seed (top-level `seed` or an entry of `sweep.seeds`) is not a
    /// non-negative integer.
    #[error("`{at}` must be a non-negative integer, got {value}")]
    BadSeed {
        /// Where the seed was found.
        at: String,
        /// The offending value.
        value: String,
    },
    /// `sweep.seeds` is present but empty (or not an array).
    #[error("`sweep.seeds` must be a non-empty array of integers")]
    EmptySeeds,
    /// `sweep.params` is not an array of tables.
    #[error("`sweep.params` must be an array of tables")]
    ParamsNotArray,
    /// More than [`MAX_PARAMS`] parameters.
    #[error("a sweep varies at most {MAX_PARAMS} parameters, got {0}")]
    TooManyParams(usize),
    /// A `[[sweep.params]]` entry is malformed.
    #[error("`sweep.params.{index}`: {reason}")]
    BadParam {
        /// The entry's index.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// Two parameters have the same path.
    #[error("parameter path `{0}` appears twice")]
    DuplicatePath(String),
    /// A parameter's `values` is empty.
    #[error("parameter `{0}` has no values")]
    EmptyValues(String),
    /// A parameter path is empty or has an empty segment.
    #[error("parameter path `{0}` has an empty segment")]
    EmptySegment(String),
    /// A parameter sets the top-level `seed`, which `sweep.seeds` controls.
    #[error("parameter path `seed` is reserved: use `sweep.seeds`")]
    SeedPath,
    /// A segment names a key that does not exist.
    #[error("parameter path `{path}`: `{segment}` not found")]
    NotFound {
        /// The whole path.
        path: String,
        /// The missing key.
        segment: String,
    },
    /// A segment indexes past the end of an array.
    #[error("parameter path `{path}`: index {segment} out of range (array has {len} elements)")]
    IndexOutOfRange {
        /// The whole path.
        path: String,
        /// The offending index.
        segment: String,
        /// The array's length.
        len: usize,
    },
    /// A segment that is not a number was applied to an array.
    #[error(
        "parameter path `{path}`: `{segment}` is not an index, but the value there is an array"
    )]
    NotAnIndex {
        /// The whole path.
        path: String,
        /// The offending segment.
        segment: String,
    },
    /// A segment tries to descend into a value that is neither a table nor an
    /// array.
    #[error("parameter path `{path}`: cannot look up `{segment}` in a {kind}, not a table")]
    NotATable {
        /// The whole path.
        path: String,
        /// The segment that could not be looked up.
        segment: String,
        /// The type of the value found instead (`integer`, `string`, …).
        kind: String,
    },
}

/// One `[[sweep.params]]` entry.
struct Param {
    path: String,
    values: Vec<Value>,
}

/// Expands the document's `[sweep]` into concrete points: the cartesian
/// product of the parameters' values (first parameter outermost) and the
/// seeds (innermost). Without `sweep.seeds` the document's own `seed`
/// (default [`DEFAULT_SEED`]) is the only seed; without `[sweep]` the result
/// is one point, the document itself with its seed.
pub fn expand(doc: &Table) -> Result<Vec<SweepPoint>, SweepError> {
    let mut base = doc.clone();
    let sweep = base.remove("sweep");
    let own_seed = match base.get("seed") {
        None => DEFAULT_SEED,
        Some(v) => seed_of(v, "seed")?,
    };
    let (seeds, params) = match sweep {
        None => (vec![own_seed], Vec::new()),
        Some(Value::Table(t)) => parse_sweep(t, own_seed)?,
        Some(_) => return Err(SweepError::SweepNotTable),
    };
    // Check every path once, before building the points.
    for p in &params {
        set_path(&mut base.clone(), &p.path, p.values[0].clone())?;
    }

    let mut combos: Vec<Vec<(String, Value)>> = vec![Vec::new()];
    for p in &params {
        combos = combos
            .into_iter()
            .flat_map(|prefix| {
                p.values.iter().map(move |v| {
                    let mut c = prefix.clone();
                    c.push((p.path.clone(), v.clone()));
                    c
                })
            })
            .collect();
    }

    let mut points = Vec::with_capacity(combos.len() * seeds.len());
    for combo in combos {
        let mut with_params = base.clone();
        for (path, v) in &combo {
            set_path(&mut with_params, path, v.clone())?;
        }
        for &seed in &seeds {
            let mut doc = with_params.clone();
            doc.insert("seed".into(), Value::Integer(seed as i64));
            points.push(SweepPoint {
                params: combo.clone(),
                seed,
                doc,
            });
        }
    }
    Ok(points)
}

/// A seed value: a non-negative TOML integer.
fn seed_of(v: &Value, at: &str) -> Result<u64, SweepError> {
    match v {
        Value::Integer(i) if *i >= 0 => Ok(*i as u64),
        other => Err(SweepError::BadSeed {
            at: at.to_string(),
            value: other.to_string(),
        }),
    }
}

/// Reads `[sweep]`: its seeds (or `[own_seed]`) and parameters.
fn parse_sweep(mut t: Table, own_seed: u64) -> Result<(Vec<u64>, Vec<Param>), SweepError> {
    let seeds = match t.remove("seeds") {
        None => vec![own_seed],
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .enumerate()
            .map(|(i, v)| seed_of(v, &format!("sweep.seeds.{i}")))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(SweepError::EmptySeeds),
    };
    let raw = match t.remove("params") {
        None => Vec::new(),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(SweepError::ParamsNotArray),
    };
    if let Some(key) = t.keys().next() {
        return Err(SweepError::UnknownSweepKey(key.clone()));
    }
    if raw.len() > MAX_PARAMS {
        return Err(SweepError::TooManyParams(raw.len()));
    }
    let mut params: Vec<Param> = Vec::new();
    for (index, entry) in raw.into_iter().enumerate() {
        let bad = |reason: &str| SweepError::BadParam {
            index,
            reason: reason.to_string(),
        };
        let Value::Table(mut entry) = entry else {
            return Err(bad("must be a table with `path` and `values`"));
        };
        let path = match entry.remove("path") {
            Some(Value::String(s)) => s,
            Some(_) => return Err(bad("`path` must be a string")),
            None => return Err(bad("missing `path`")),
        };
        let values = match entry.remove("values") {
            Some(Value::Array(a)) => a,
            Some(_) => return Err(bad("`values` must be an array")),
            None => return Err(bad("missing `values`")),
        };
        if let Some(key) = entry.keys().next() {
            return Err(bad(&format!(
                "unknown key `{key}` (expected `path` and `values`)"
            )));
        }
        if path.split('.').any(str::is_empty) {
            return Err(SweepError::EmptySegment(path));
        }
        if path == "seed" {
            return Err(SweepError::SeedPath);
        }
        if values.is_empty() {
            return Err(SweepError::EmptyValues(path));
        }
        if params.iter().any(|p| p.path == path) {
            return Err(SweepError::DuplicatePath(path));
        }
        params.push(Param { path, values });
    }
    Ok((seeds, params))
}

/// Replaces the value at the dotted `path` of `doc` with `value`. Every
/// segment must exist; numeric segments index arrays.
pub fn set_path(doc: &mut Table, path: &str, value: Value) -> Result<(), SweepError> {
    let segments: Vec<&str> = path.split('.').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(SweepError::EmptySegment(path.to_string()));
    }
    let not_found = |segment: &str| SweepError::NotFound {
        path: path.to_string(),
        segment: segment.to_string(),
    };
    let (first, rest) = segments.split_first().expect("split yields one segment");
    let mut cur = doc.get_mut(*first).ok_or_else(|| not_found(first))?;
    for segment in rest {
        cur = match cur {
            Value::Table(t) => t.get_mut(*segment).ok_or_else(|| not_found(segment))?,
            Value::Array(a) => {
                let index: usize = segment.parse().map_err(|_| SweepError::NotAnIndex {
                    path: path.to_string(),
                    segment: segment.to_string(),
                })?;
                let len = a.len();
                a.get_mut(index)
                    .ok_or_else(|| SweepError::IndexOutOfRange {
                        path: path.to_string(),
                        segment: segment.to_string(),
                        len,
                    })?
            }
            other => {
                return Err(SweepError::NotATable {
                    path: path.to_string(),
                    segment: segment.to_string(),
                    kind: other.type_str().to_string(),
                })
            }
        };
    }
    *cur = value;
    Ok(())
}

/// Runs every point with `run` on a rayon pool of `threads` threads (at least
/// one), showing a progress bar on stderr (hidden when stderr is not a
/// terminal). The outcomes come back in the order of `points`, whatever
/// order the runs finish in. A run that fails or panics gives an outcome whose
/// error message starts with its parameters and seed.
pub fn run_all<F>(points: Vec<SweepPoint>, threads: usize, run: F) -> Vec<SweepOutcome>
where
    F: Fn(&SweepPoint) -> anyhow::Result<Summary> + Sync,
{
    let bar =
        ProgressBar::with_draw_target(Some(points.len() as u64), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} runs {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    let one = |p: &SweepPoint| {
        let result = match catch_unwind(AssertUnwindSafe(|| run(p))) {
            Ok(Ok(summary)) => Ok(summary),
            Ok(Err(e)) => Err(format!("{}: {e:#}", p.label())),
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic payload".to_string());
                Err(format!("{}: panicked: {msg}", p.label()))
            }
        };
        bar.inc(1);
        SweepOutcome {
            params: p.params.clone(),
            seed: p.seed,
            result,
        }
    };
    let outcomes = match rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
    {
        Ok(pool) => pool.install(|| points.par_iter().map(one).collect()),
        Err(_) => points.iter().map(one).collect(),
    };
    bar.finish_and_clear();
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"
name = "two-sites"
seed = 9

[[sites]]
name = "hq"
upload_mbps = 10.0
endpoints = 100

[[sites]]
name = "branch"
upload_mbps = 1.0
endpoints = 20

[rollout]
waves = [0.01, 0.1, 1.0]

[sweep]
seeds = [1, 2]

[[sweep.params]]
path = "sites.1.upload_mbps"
values = [2.0, 4.0]

[[sweep.params]]
path = "rollout.waves.0"
values = [0.05, 0.2]
"#;

    fn doc(text: &str) -> Table {
        text.parse().unwrap()
    }

    fn get<'a>(t: &'a Table, path: &str) -> &'a Value {
        let mut segs = path.split('.');
        let mut cur = &t[segs.next().unwrap()];
        for s in segs {
            cur = match cur {
                Value::Array(a) => &a[s.parse::<usize>().unwrap()],
                other => &other[s],
            };
        }
        cur
    }

    #[test]
    fn two_params_times_two_seeds() {
        let points = expand(&doc(DOC)).unwrap();
        assert_eq!(points.len(), 8);
        let mut expected = Vec::new();
        for up in [2.0, 4.0] {
            for w in [0.05, 0.2] {
                for seed in [1u64, 2] {
                    expected.push((up, w, seed));
                }
            }
        }
        for (p, (up, w, seed)) in points.iter().zip(expected) {
            assert_eq!(p.seed, seed);
            assert_eq!(
                p.params,
                vec![
                    ("sites.1.upload_mbps".to_string(), Value::Float(up)),
                    ("rollout.waves.0".to_string(), Value::Float(w)),
                ]
            );
            assert!(!p.doc.contains_key("sweep"));
            assert_eq!(p.doc["seed"], Value::Integer(seed as i64));
            assert_eq!(get(&p.doc, "sites.1.upload_mbps"), &Value::Float(up));
            assert_eq!(get(&p.doc, "rollout.waves.0"), &Value::Float(w));
            // Untouched neighbours stay as they were.
            assert_eq!(get(&p.doc, "sites.0.upload_mbps"), &Value::Float(10.0));
            assert_eq!(get(&p.doc, "rollout.waves.1"), &Value::Float(0.1));
            assert_eq!(get(&p.doc, "sites.1.name"), &Value::String("branch".into()));
        }
        assert_eq!(
            points[3].label(),
            "sites.1.upload_mbps=2.0 rollout.waves.0=0.2 seed=2"
        );
    }

    #[test]
    fn without_sweep_one_point_with_own_seed() {
        let d = doc("name = \"x\"\nseed = 5\n");
        let points = expand(&d).unwrap();
        assert_eq!(points.len(), 1);
        assert_eq!(points[0].seed, 5);
        assert!(points[0].params.is_empty());
        assert_eq!(points[0].doc, d);

        let points = expand(&doc("name = \"x\"\n")).unwrap();
        assert_eq!(points[0].seed, DEFAULT_SEED);
        assert_eq!(points[0].doc["seed"], Value::Integer(1));

        // Params without seeds use the document's seed.
        let points = expand(&doc(
            "seed = 4\nx = 1\n[sweep]\n[[sweep.params]]\npath = \"x\"\nvalues = [2, 3]\n",
        ))
        .unwrap();
        assert_eq!(points.len(), 2);
        assert!(points.iter().all(|p| p.seed == 4));
        assert_eq!(points[1].doc["x"], Value::Integer(3));
    }

    fn err(text: &str) -> SweepError {
        expand(&doc(text)).unwrap_err()
    }

    fn with_param(path: &str) -> String {
        format!(
            "x = 1\narr = [1, 2]\n[[t]]\na = 1\n[sweep]\n[[sweep.params]]\npath = \"{path}\"\nvalues = [1]\n"
        )
    }

    #[test]
    fn bad_paths_name_the_path() {
        let cases = [
            ("y", "`y` not found"),
            ("t.0.b", "`b` not found"),
            ("t.3.a", "index 3 out of range (array has 1 elements)"),
            ("arr.first", "`first` is not an index"),
            ("x.y", "cannot look up `y` in a integer"),
            ("t..a", "empty segment"),
        ];
        for (path, what) in cases {
            let e = err(&with_param(path)).to_string();
            assert!(e.contains(&format!("`{path}`")), "{e}");
            assert!(e.contains(what), "{path}: {e}");
        }
        assert!(expand(&doc(&with_param("t.0.a"))).is_ok());
        assert!(expand(&doc(&with_param("arr.1"))).is_ok());
    }

    #[test]
    fn bad_sweeps_are_rejected() {
        let three = "x = 1\n[sweep]\n\
            [[sweep.params]]\npath = \"x\"\nvalues = [1]\n\
            [[sweep.params]]\npath = \"x\"\nvalues = [1]\n\
            [[sweep.params]]\npath = \"x\"\nvalues = [1]\n";
        assert_eq!(err(three), SweepError::TooManyParams(3));
        assert_eq!(
            err("x = 1\n[sweep]\n[[sweep.params]]\npath = \"x\"\nvalues = []\n"),
            SweepError::EmptyValues("x".into())
        );
        assert_eq!(err("[sweep]\nseeds = []\n"), SweepError::EmptySeeds);
        assert!(matches!(
            err("[sweep]\nseeds = [-1]\n"),
            SweepError::BadSeed { .. }
        ));
        assert!(matches!(err("seed = \"a\"\n"), SweepError::BadSeed { .. }));
        assert_eq!(err("sweep = 3\n"), SweepError::SweepNotTable);
        assert_eq!(
            err("[sweep]\nseed = [1]\n"),
            SweepError::UnknownSweepKey("seed".into())
        );
        assert!(matches!(
            err("x = 1\n[sweep]\n[[sweep.params]]\nvalues = [1]\n"),
            SweepError::BadParam { index: 0, .. }
        ));
        assert_eq!(
            err("x = 1\n[sweep]\n[[sweep.params]]\npath = \"x\"\nvalues = [1]\n[[sweep.params]]\npath = \"x\"\nvalues = [2]\n"),
            SweepError::DuplicatePath("x".into())
        );
    }

    #[test]
    fn run_all_keeps_order_and_reports_seed() {
        let points = expand(&doc(DOC)).unwrap();
        let outcomes = run_all(points.clone(), 3, |p| {
            if p.seed == 2 && p.params[1].1 == Value::Float(0.2) {
                anyhow::bail!("boom");
            }
            if p.seed == 2 && p.params[0].1 == Value::Float(4.0) {
                panic!("kaboom");
            }
            Ok(Summary {
                seed: p.seed,
                scenario: p.label(),
                ..Summary::default()
            })
        });
        assert_eq!(outcomes.len(), points.len());
        for (o, p) in outcomes.iter().zip(&points) {
            assert_eq!(o.seed, p.seed);
            assert_eq!(o.params, p.params);
            match &o.result {
                Ok(s) => assert_eq!(s.scenario, p.label()),
                Err(e) => {
                    assert!(e.contains("seed=2"), "{e}");
                    assert!(e.contains("boom"), "{e}");
                }
            }
        }
        assert_eq!(outcomes.iter().filter(|o| o.result.is_err()).count(), 3);
    }
}
