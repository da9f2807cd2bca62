//! The runs list (`GET /v3/workflows`): a caller's filters checked one by one (each refusal
//! names its parameter), then one page of the tenant's runs from the runtime's visibility.

use crate::error::ServiceError;
use crate::{Service, require};
use chrono::{DateTime, Utc};
use drift_core::domain::runs::{
    DEFAULT_PAGE, MAX_PAGE, MAX_TOKEN_CHARS, MAX_WAITING, RunsFilter, RunsPage, RunsRequest, is_filter_id,
};
use drift_core::domain::{Caller, Scope, WorkflowStatus};
use serde::Deserialize;
use std::time::Duration;

/// The list's query parameters, as sent.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// Only runs of this definition (its id).
    pub definition: Option<String>,
    /// Only runs of this version of it.
    pub version: Option<String>,
    /// Only runs in this status: `RUNNING`, `WAITING`, `SCHEDULER_WAITING`, `COMPLETED`,
    /// `FAILED`, `TERMINATED` (ended by Drift or by Temporal: terminated, timed out, cancelled).
    pub status: Option<String>,
    /// Only runs waiting on this node's screen or timer now.
    pub waiting_on: Option<String>,
    /// Only runs started after this time (RFC 3339).
    pub started_after: Option<String>,
    /// Only runs started before this time (RFC 3339).
    pub started_before: Option<String>,
    /// Only runs that have waited on their screen or timer longer than this many seconds.
    pub waiting_longer_than_secs: Option<u64>,
    /// Runs per page (default 50, at most 200).
    pub page_size: Option<usize>,
    /// The previous page's `nextPageToken`.
    pub page_token: Option<String>,
}

fn time(field: &str, v: Option<String>) -> Result<Option<DateTime<Utc>>, ServiceError> {
    v.map(|s| {
        DateTime::parse_from_rfc3339(&s).map(|t| t.to_utc()).map_err(|e| {
            ServiceError::Invalid(format!(
                "`{field}` must be an RFC 3339 time, e.g. 2026-12-01T00:00:00Z ({e})"
            ))
        })
    })
    .transpose()
}

fn id(field: &str, v: Option<String>) -> Result<Option<String>, ServiceError> {
    match v {
        Some(s) if !is_filter_id(&s) => Err(ServiceError::Invalid(format!(
            "`{field}` must be 1 to 200 letters, digits, '_', '-' or '.'"
        ))),
        v => Ok(v),
    }
}

impl RunsQuery {
    /// The request these parameters make, or why they make none.
    pub fn parse(self) -> Result<RunsRequest, ServiceError> {
        let status = self
            .status
            .map(|s| {
                serde_json::from_value::<WorkflowStatus>(serde_json::Value::String(s.clone())).map_err(|_| {
                    ServiceError::Invalid(format!(
                        "`status` {s:?} is not one of RUNNING, WAITING, SCHEDULER_WAITING, COMPLETED, FAILED, TERMINATED"
                    ))
                })
            })
            .transpose()?;
        let waiting_longer_than = self
            .waiting_longer_than_secs
            .map(Duration::from_secs)
            .map(|d| match d <= MAX_WAITING {
                true => Ok(d),
                false => Err(ServiceError::Invalid(format!(
                    "`waitingLongerThanSecs` may be at most {} (a year)",
                    MAX_WAITING.as_secs()
                ))),
            })
            .transpose()?;
        let page_size = match self.page_size {
            None => DEFAULT_PAGE,
            Some(n) if (1..=MAX_PAGE).contains(&n) => n,
            Some(n) => {
                return Err(ServiceError::Invalid(format!(
                    "`pageSize` {n} is not between 1 and {MAX_PAGE}"
                )));
            }
        };
        if self.page_token.as_ref().is_some_and(|t| t.len() > MAX_TOKEN_CHARS) {
            return Err(ServiceError::Invalid("`pageToken` is not one this list gave".into()));
        }
        let filter = RunsFilter {
            definition: id("definition", self.definition)?,
            version: id("version", self.version)?,
            status,
            waiting_on: id("waitingOn", self.waiting_on)?,
            started_after: time("startedAfter", self.started_after)?,
            started_before: time("startedBefore", self.started_before)?,
            waiting_longer_than,
        };
        if let (Some(a), Some(b)) = (filter.started_after, filter.started_before)
            && b <= a
        {
            return Err(ServiceError::Invalid(
                "`startedBefore` must be after `startedAfter`".into(),
            ));
        }
        Ok(RunsRequest {
            filter,
            page_size,
            page_token: self.page_token,
        })
    }
}

impl Service {
    /// One page of the caller's tenant's runs matching `req`, newest first.
    pub async fn runs(&self, caller: &Caller, req: &RunsRequest) -> Result<RunsPage, ServiceError> {
        require(caller, Scope::Read)?;
        Ok(self.0.runtime.runs(&caller.tenant, req).await?)
    }
}
