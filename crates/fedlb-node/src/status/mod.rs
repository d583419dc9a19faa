//! The status of a node: what `GET /status` serves (JSON), what `GET /` draws (HTML) and
//! what `fedlb status URL` prints. It is a view of the core's state; it decides nothing.
//!
//! - [`model`](self::Status): the serde types of the JSON document, whose schema is
//!   documented in `docs/status.md` (`tests/status_schema.rs` checks it);
//! - `build`: the document from the core's state and the shell's extras
//!   ([`farm_status`], [`global_status`]). Every field comes from data (a summary's
//!   `policy`, a member's declared `kind`), never from parsing a decision's `why`;
//! - `render`: the HTML page ([`render_html`]) and the terminal tables ([`render_table`],
//!   [`render_changes`]);
//! - `timeline`: what the running node remembers for "what changed, when" — the last
//!   changes of its decisions ([`Timeline`]) and each candidate's recent load
//!   ([`LoadHistory`]), both bounded.

mod build;
mod model;
mod render;
mod timeline;

pub use build::{GlobalExtras, farm_status, global_status};
pub use model::{
    AgedValue, AnswerStatus, CandidateStatus, CertificateExpiry, ChangeStatus, FarmNodeSeen,
    FarmStatus, LoadSeries, OverrideStatus, PeersStatus, PrimaryStatus, PublishStatus,
    ReadingsStatus, SCHEMA_VERSION, ServiceStatus, Status, TierStatus, any_degraded,
};
pub use render::{render_changes, render_html, render_table};
pub use timeline::{LoadHistory, SeriesKey, Timeline};
