//! Listing runs for operators: the filters a caller may give, checked at the edge (so no caller
//! text ever reaches a visibility query unchecked), and what each run shows.

use super::WorkflowStatus;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::time::Duration;

/// Runs per page unless the caller asks for fewer or more.
pub const DEFAULT_PAGE: usize = 50;
/// The most runs one page may hold.
pub const MAX_PAGE: usize = 200;
/// The longest page token taken back (Temporal's are far shorter).
pub const MAX_TOKEN_CHARS: usize = 4096;
/// The longest "waiting longer than" a caller may ask about: a year.
pub const MAX_WAITING: Duration = Duration::from_secs(366 * 24 * 3600);

/// Which runs: each filter present narrows the list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunsFilter {
    pub definition: Option<String>,
    pub version: Option<String>,
    pub status: Option<WorkflowStatus>,
    /// The node of the screen or timer the run waits on.
    pub waiting_on: Option<String>,
    pub started_after: Option<DateTime<Utc>>,
    pub started_before: Option<DateTime<Utc>>,
    /// Runs that have waited on their current screen or timer longer than this.
    pub waiting_longer_than: Option<Duration>,
}

/// One page of a listing: `page_token` is the previous page's `nextPageToken`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunsRequest {
    pub filter: RunsFilter,
    pub page_size: usize,
    pub page_token: Option<String>,
}

/// Whether a node or definition id may be named in a filter: the characters ids are made of.
pub fn is_filter_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// One run as the list shows it.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    pub workflow_id: String,
    pub definition: Option<String>,
    pub version: Option<String>,
    pub status: WorkflowStatus,
    /// The node of the screen or timer it waits on (while it waits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_on: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_since: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<DateTime<Utc>>,
}

/// A page of runs, newest first.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunsPage {
    pub runs: Vec<RunSummary>,
    /// Pass as `pageToken` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_id_is_made_of_id_characters_only() {
        for ok in ["confirm", "refund_reason", "step-2", "v1.2"] {
            assert!(is_filter_id(ok), "{ok}");
        }
        for bad in ["", "a'b", "a b", "x\" OR 1=1", "ä", &"x".repeat(201)] {
            assert!(!is_filter_id(bad), "{bad}");
        }
    }
}
