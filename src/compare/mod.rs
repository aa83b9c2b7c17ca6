//! Regression checks between two commits (`wsbench compare`). (stub, being written)

/// Arguments of `wsbench compare`.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// The commit to compare against.
    pub base: String,
    /// The commit under test (default: the working tree).
    pub head: Option<String>,
}

/// Arguments of the hidden `wsbench measure` (one round of the quick set).
#[derive(Debug, clap::Args)]
pub struct MeasureArgs {
    /// Where to write the round's figures (JSON).
    #[arg(long)]
    pub out: std::path::PathBuf,
}

/// Runs a comparison; returns the process exit code.
pub fn run(_args: &CompareArgs) -> i32 {
    eprintln!("wsbench: compare is not built yet");
    2
}

/// Runs one round of the quick measurement set.
pub fn measure(_args: &MeasureArgs) -> anyhow::Result<()> {
    anyhow::bail!("measure is not built yet")
}
