//! The report step: turns `results.json` (and criterion's own files) into a
//! directory of files a reader can open: `summary.md`, `claims.md` (what
//! the ratio tables claim), `results.csv`, a copy
//! of the results, SVG charts and the flamegraphs.
//!
//! Reports read results; they never measure. Two places take a report:
//! [`generate`] writes any run's, quick or partial, under the target
//! directory (`target/wsbench/report`); [`publish`] writes the committed
//! `target-reports/` and `discussion.md`, and only from a complete
//! reference run (see [`publish::check`]), so a partial run cannot spoil
//! them. Either directory is replaced as a whole: everything is built in a
//! sibling temporary directory and swapped in by renames, so a failed or
//! interrupted report leaves the previous one as it was.
//!
//! - `data`: orders, number formats and the stacks-by-parameters pivot;
//! - `markdown`, `csv`, `plots` (on top of the chart writer in [`svg`]):
//!   the files;
//! - `criterion` and `flamegraphs`: what criterion left on disk;
//! - `publish`: what makes a run a reference run;
//! - `claims`: what the ratio tables may call faster, and whether another
//!   run agrees;
//! - `discussion`: `discussion.md` expanded from its template and checked
//!   against the results.

pub mod claims;
mod criterion;
mod csv;
mod data;
pub mod discussion;
mod flamegraphs;
mod markdown;
mod plots;
pub mod publish;
pub mod svg;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{bail, Context};

use crate::results::ResultsFile;
use crate::stacks::STACKS;

pub use data::{EXPECTED_GROUPS, FLOOR_STACK};
pub use publish::{NotReference, PublishRefused};

/// Where the report reads from and writes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportOptions {
    pub results_path: PathBuf,
    /// Criterion's output directory (`target/criterion`): estimates and flamegraphs.
    pub criterion_dir: PathBuf,
    /// Where [`generate`] writes the report of any run; replaced as a whole.
    pub out_dir: PathBuf,
    /// Where [`publish`] writes the reference report (`target-reports`);
    /// replaced as a whole. `discussion.md` is written beside it, from the
    /// template beside it.
    pub publish_dir: PathBuf,
    /// A second full run of the same commit, whose rounds are set beside
    /// the results' own ([`crate::results::attach_pair`]): the report then
    /// claims only what both runs claim.
    pub pair_path: Option<PathBuf>,
}

impl ReportOptions {
    /// The results the benches write, criterion's directory and the report
    /// directory `wsbench/report` in the same target directory, and
    /// `target-reports` below the current directory to publish to.
    pub fn defaults() -> Self {
        let target = crate::results::target_dir();
        ReportOptions {
            results_path: crate::results::default_path(),
            criterion_dir: target.join("criterion"),
            out_dir: target.join("wsbench").join("report"),
            publish_dir: PathBuf::from("target-reports"),
            pair_path: None,
        }
    }
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self::defaults()
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportSummary {
    pub out_dir: PathBuf,
    /// Every file written, relative to `out_dir`, sorted.
    pub files: Vec<PathBuf>,
    /// Groups in the results file, in report order.
    pub groups_present: Vec<String>,
    /// Groups of [`EXPECTED_GROUPS`] the results file lacks.
    pub groups_missing: Vec<String>,
    /// Charts not drawn, each with the reason.
    pub plots_skipped: Vec<String>,
    /// Things worth knowing that did not stop the report (unreadable
    /// criterion files, an old report that could not be removed).
    pub notes: Vec<String>,
}

impl fmt::Display for ReportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "wrote {} files to {}",
            self.files.len(),
            self.out_dir.display()
        )?;
        writeln!(f, "groups: {}", self.groups_present.join(", "))?;
        if !self.groups_missing.is_empty() {
            writeln!(
                f,
                "not measured in this run: {} (run `cargo bench` to measure them)",
                self.groups_missing.join(", ")
            )?;
        }
        for plot in &self.plots_skipped {
            writeln!(f, "chart skipped: {plot}")?;
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        Ok(())
    }
}

/// Reads the results and criterion's files and writes the report to
/// `out_dir`, whatever the run: quick, partial or complete. Never touches
/// `publish_dir` or `discussion.md`.
///
/// Fails, leaving any previous report untouched, when the results file is
/// missing, does not parse, has another schema or holds no groups.
pub fn generate(opts: &ReportOptions) -> anyhow::Result<ReportSummary> {
    let run = Inputs::read(opts)?;
    write_report(&opts.out_dir, opts, &run)
}

/// Writes the reference report to `publish_dir` and `discussion.md` beside
/// it (when the template is there), from a complete run only.
///
/// Refuses with a [`PublishRefused`] that lists every reason, writing
/// nothing, when the run is quick, lacks a group, was measured at several
/// commits, at a dirty one or outside git, lacks the latency flamegraphs
/// (or has older ones), or would drop a published flamegraph without a
/// replacement. Also writes nothing when the discussion's template does
/// not fit the run.
pub fn publish(opts: &ReportOptions) -> anyhow::Result<ReportSummary> {
    let mut run = Inputs::read(opts)?;
    let plan = flamegraphs::plan(&run.scan.flamegraphs);
    publish::check(&run.file, &run.scan.flamegraphs, &plan, &opts.publish_dir)?;
    // Expanded before anything is written, so a template that does not
    // fit the run leaves both the report and the discussion as they were.
    // The template lives beside the report directory (the repository's
    // root); a report published elsewhere has none and writes no discussion.
    let root = opts.publish_dir.parent().unwrap_or(Path::new(""));
    let template = root.join(discussion::TEMPLATE_FILE);
    let discussion = if template.exists() {
        let text = std::fs::read_to_string(&template)
            .with_context(|| format!("reading {}", template.display()))?;
        let (expanded, made) = discussion::expand_with_claims(&text, &run.file, Some(root))
            .with_context(|| {
                format!(
                    "not publishing: {} does not fit this run",
                    template.display()
                )
            })?;
        run.discussion_claims = made;
        Some((root.join(discussion::OUTPUT_FILE), expanded))
    } else {
        None
    };
    let mut summary = write_report(&opts.publish_dir, opts, &run)?;
    if let Some((out, expanded)) = discussion {
        crate::results::write_atomically(&out, expanded.as_bytes()).with_context(|| {
            format!(
                "{} was published, but {} was not written",
                opts.publish_dir.display(),
                out.display()
            )
        })?;
        summary.notes.push(format!(
            "wrote {} from {}",
            out.display(),
            template.display()
        ));
    }
    Ok(summary)
}

/// What a report is made from.
struct Inputs {
    file: ResultsFile,
    /// The results as this build reads them, serialised.
    raw: Vec<u8>,
    scan: criterion::CriterionScan,
    /// The table's stacks, then any others the results name.
    stacks: Vec<String>,
    /// The claims of the discussion published with the report.
    discussion_claims: Vec<claims::Claim>,
}

impl Inputs {
    fn read(opts: &ReportOptions) -> anyhow::Result<Inputs> {
        let mut file = load_results(&opts.results_path)?;
        if let Some(pair) = &opts.pair_path {
            crate::results::attach_pair_file(&mut file, &opts.results_path, pair)?;
        }
        // Written out as this build reads it (an older schema upgraded),
        // with the pair's rounds where one was given.
        let raw = serde_json::to_vec_pretty(&file)?;
        let mut stacks: Vec<String> = STACKS.iter().map(|s| s.name.to_string()).collect();
        for m in file.measurements() {
            if !stacks.contains(&m.stack) {
                stacks.push(m.stack.clone());
            }
        }
        let scan = criterion::scan(&opts.criterion_dir, &stacks);
        Ok(Inputs {
            file,
            raw,
            scan,
            stacks,
            discussion_claims: Vec::new(),
        })
    }
}

/// Builds the report of `run` and swaps it in at `dir`.
fn write_report(dir: &Path, opts: &ReportOptions, run: &Inputs) -> anyhow::Result<ReportSummary> {
    let (mut summary, litter) = publish_atomically(dir, |staging| build(staging, opts, run))?;
    summary.out_dir = dir.to_path_buf();
    summary.notes.extend(litter);
    Ok(summary)
}

/// Reads and checks the results file.
///
/// The messages name the file and say how to make one, since the usual
/// cause is a report asked for before any bench ran.
fn load_results(path: &Path) -> anyhow::Result<ResultsFile> {
    let raw = match std::fs::read(path) {
        Ok(raw) => raw,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no results file at {}: nothing has been measured yet; run `cargo bench` first (it writes that file), \
             then make the report",
            path.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot read the results file {}", path.display())),
    };
    let file = ResultsFile::from_json(&raw, path)?;
    if file.groups.is_empty() {
        bail!(
            "{} holds no benchmark groups, so there is nothing to report; run `cargo bench` to measure them",
            path.display()
        );
    }
    Ok(file)
}

/// Writes files below the staging directory and remembers their names.
struct Writer<'a> {
    root: &'a Path,
    files: Vec<PathBuf>,
}

impl Writer<'_> {
    fn write(&mut self, rel: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let path = self.root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        self.files.push(PathBuf::from(rel));
        Ok(())
    }

    fn copy(&mut self, rel: &str, from: &Path) -> anyhow::Result<()> {
        let bytes = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
        self.write(rel, &bytes)
    }
}

/// Makes every file of the report in `dir`.
fn build(dir: &Path, opts: &ReportOptions, run: &Inputs) -> anyhow::Result<ReportSummary> {
    let (file, raw, scan, stacks) = (&run.file, &run.raw[..], &run.scan, &run.stacks[..]);
    let mut w = Writer {
        root: dir,
        files: Vec::new(),
    };
    let mut groups_present: Vec<String> = file.groups.keys().cloned().collect();
    groups_present.sort_by(|a, b| data::cmp_groups(a, b));
    let groups_missing: Vec<String> = EXPECTED_GROUPS
        .iter()
        .filter(|g| !file.groups.contains_key(**g))
        .map(|g| g.to_string())
        .collect();

    // What the benches wrote, as this build reads it, with the pair's
    // rounds where one was given.
    w.write("results.json", raw)?;
    w.write(
        "results.csv",
        csv::render(file, &scan.estimates, stacks).as_bytes(),
    )?;

    let plots = plots::all(file);
    let mut plots_skipped = Vec::new();
    for plot in &plots {
        match &plot.outcome {
            Ok(svg) => w.write(plot.file, svg.as_bytes())?,
            Err(why) => plots_skipped.push(format!("{}: {why}", plot.file)),
        }
    }

    let flames = flamegraphs::plan(&scan.flamegraphs);
    for copy in flames.all.iter().chain(&flames.per_stack) {
        w.copy(&copy.dest, &copy.source)?;
    }

    let summary_md = markdown::render(&markdown::Inputs {
        results_path: &opts.results_path,
        criterion_dir: &opts.criterion_dir,
        file,
        groups_present: &groups_present,
        groups_missing: &groups_missing,
        plots: &plots,
        flames: &flames,
        criterion: scan,
    });
    w.write("summary.md", summary_md.as_bytes())?;
    // Every claim of the ratio tables and of the discussion published with
    // them, for a reader who wants them in one list.
    let threshold = crate::rounds::CLAIM_THRESHOLD;
    let list = claims::with_discussion(file, threshold, &run.discussion_claims);
    w.write(
        "claims.md",
        claims::render(file, &list, None, threshold).as_bytes(),
    )?;

    let mut files = w.files;
    files.sort();
    files.dedup();
    Ok(ReportSummary {
        out_dir: dir.to_path_buf(),
        files,
        groups_present,
        groups_missing,
        plots_skipped,
        notes: scan.notes.clone(),
    })
}

/// Distinguishes the staging directories of concurrent reports in one
/// process (tests run in parallel and share the process id).
static STAGING_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A staging directory that removes itself unless it was swapped in,
/// including when `build` panics.
struct Staging {
    path: PathBuf,
    keep: bool,
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Runs `build` on a fresh sibling of `out_dir`, then swaps it in: the old
/// directory is renamed aside, the new one renamed into place, the old one
/// deleted. On any error the staging directory goes and `out_dir` is as it
/// was. Also returns a note when the old directory could not be deleted.
fn publish_atomically<T>(
    out_dir: &Path,
    build: impl FnOnce(&Path) -> anyhow::Result<T>,
) -> anyhow::Result<(T, Option<String>)> {
    let name = out_dir
        .file_name()
        .with_context(|| {
            format!(
                "the report directory {} does not name a directory",
                out_dir.display()
            )
        })?
        .to_string_lossy()
        .into_owned();
    let parent = out_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if out_dir.exists() && !out_dir.is_dir() {
        bail!(
            "{} exists and is not a directory; not replacing it with a report",
            out_dir.display()
        );
    }
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let unique = format!(
        "{}-{}",
        std::process::id(),
        STAGING_COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let staging_path = parent.join(format!("{name}.tmp-{unique}"));
    let aside = parent.join(format!("{name}.old-{unique}"));
    // Left over by a crash of an earlier process that had the same id.
    let _ = std::fs::remove_dir_all(&staging_path);
    std::fs::create_dir(&staging_path)
        .with_context(|| format!("creating {}", staging_path.display()))?;
    let mut staging = Staging {
        path: staging_path,
        keep: false,
    };

    let value = build(&staging.path)?;

    let had_old = out_dir.exists();
    if had_old {
        std::fs::rename(out_dir, &aside)
            .with_context(|| format!("moving the old report {} aside", out_dir.display()))?;
    }
    if let Err(e) = std::fs::rename(&staging.path, out_dir) {
        if had_old {
            // Put the old report back: a failed report must not remove it.
            let _ = std::fs::rename(&aside, out_dir);
        }
        return Err(e).with_context(|| format!("moving the new report into {}", out_dir.display()));
    }
    staging.keep = true;
    // The new report is in place; an old copy that will not go away is
    // litter, not a failure.
    let litter = if had_old {
        std::fs::remove_dir_all(&aside).err().map(|e| {
            format!(
                "could not remove the old report at {}: {e}",
                aside.display()
            )
        })
    } else {
        None
    };
    Ok((value, litter))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("wsbench-report-unit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn leftovers(parent: &Path) -> Vec<String> {
        std::fs::read_dir(parent)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-") || n.contains(".old-"))
            .collect()
    }

    #[test]
    fn a_failing_build_leaves_the_old_report() {
        let parent = scratch("failing-build");
        let out = parent.join("reports");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("summary.md"), "old").unwrap();
        let result: anyhow::Result<((), Option<String>)> = publish_atomically(&out, |dir| {
            std::fs::write(dir.join("summary.md"), "half")?;
            bail!("chart failed")
        });
        assert!(result.is_err());
        assert_eq!(
            std::fs::read_to_string(out.join("summary.md")).unwrap(),
            "old"
        );
        assert!(leftovers(&parent).is_empty(), "{:?}", leftovers(&parent));
        let _ = std::fs::remove_dir_all(&parent);
    }

    #[test]
    fn a_panicking_build_leaves_no_staging_directory() {
        let parent = scratch("panicking-build");
        let out = parent.join("reports");
        let caught = std::panic::catch_unwind(|| {
            let _: anyhow::Result<((), Option<String>)> =
                publish_atomically(&out, |_| panic!("bug in a chart"));
        });
        assert!(caught.is_err());
        assert!(!out.exists());
        assert!(leftovers(&parent).is_empty(), "{:?}", leftovers(&parent));
        let _ = std::fs::remove_dir_all(&parent);
    }

    #[test]
    fn a_good_build_replaces_the_old_report() {
        let parent = scratch("good-build");
        let out = parent.join("reports");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("stale.txt"), "old").unwrap();
        publish_atomically(&out, |dir| {
            Ok(std::fs::write(dir.join("summary.md"), "new")?)
        })
        .unwrap();
        assert!(!out.join("stale.txt").exists());
        assert_eq!(
            std::fs::read_to_string(out.join("summary.md")).unwrap(),
            "new"
        );
        assert!(leftovers(&parent).is_empty(), "{:?}", leftovers(&parent));
        let _ = std::fs::remove_dir_all(&parent);
    }
}
