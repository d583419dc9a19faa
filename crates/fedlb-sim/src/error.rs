//! The errors of `fedlb simulate`.

use fedlb_topology::Problem;

/// Everything that can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// The scenario file is wrong: every problem found, each with its field path
    /// (`regions[1].rate`), one per line.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Scenario(Vec<Problem>),
    /// The topology cannot be simulated.
    #[error("topology: {0}")]
    Topology(String),
    /// The scenario does not fit the topology (a name it refers to is missing).
    #[error("{0}")]
    Mismatch(String),
    /// `--policy` named a policy the scenario does not compare.
    #[error("no policy \"{name}\" in the scenario (it has: {known})")]
    UnknownPolicy {
        /// The name given.
        name: String,
        /// The names available.
        known: String,
    },
    /// A suite directory is wrong: every problem of every scenario in it, each naming its
    /// file, one per line.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Suite(Vec<Error>),
    /// Bad command line.
    #[error("{0}")]
    Usage(String),
    /// An output file could not be written.
    #[error("{path}: cannot write: {source}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The plot could not be drawn.
    #[error("plot: {0}")]
    Plot(String),
}
