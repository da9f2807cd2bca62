//! Identifiers parsed at the edge, so the rest of the gateway never sees an unchecked one.

use super::error::ApiError;
use axum::http::HeaderMap;
use serde_json::{Value, json};

fn valid(s: &str, max: usize, extra: &[char]) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || extra.contains(&c))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantId(String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowId(String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl TenantId {
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        if valid(s, 64, &[]) {
            Ok(Self(s.to_string()))
        } else {
            Err(ApiError::bad_request(
                "X_TENANT_ID must be 1-64 letters, digits, '_' or '-'",
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl WorkflowId {
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        if valid(s, 128, &['.', ':']) {
            Ok(Self(s.to_string()))
        } else {
            Err(ApiError::bad_request(
                "workflowId must be 1-128 letters, digits, '_', '-', '.' or ':'",
            ))
        }
    }
    pub fn generate() -> Self {
        Self(format!("wf-{}", uuid::Uuid::now_v7()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl RequestId {
    pub fn parse_or_new(s: Option<&str>) -> Result<Self, ApiError> {
        match s {
            None => Ok(Self(uuid::Uuid::new_v4().to_string())),
            Some(s) if valid(s, 128, &['.', ':']) => Ok(Self(s.to_string())),
            Some(_) => Err(ApiError::bad_request(
                "requestId must be 1-128 letters, digits, '_', '-', '.' or ':'",
            )),
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who is calling: from `X_TENANT_ID`, `X_CLIENT_ID` (required) and `X_USERNAME_ID`.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: TenantId,
    pub client: String,
    pub user: Option<String>,
}

impl Caller {
    pub fn from_headers(h: &HeaderMap) -> Result<Self, ApiError> {
        let get = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let tenant = get("X_TENANT_ID").ok_or_else(|| ApiError::bad_request("missing header X_TENANT_ID"))?;
        let client = get("X_CLIENT_ID").ok_or_else(|| ApiError::bad_request("missing header X_CLIENT_ID"))?;
        if client.len() > 128 {
            return Err(ApiError::bad_request("X_CLIENT_ID is longer than 128 characters"));
        }
        Ok(Self {
            tenant: TenantId::parse(tenant)?,
            client: client.to_string(),
            user: get("X_USERNAME_ID").map(str::to_string),
        })
    }

    pub fn thread_context(&self) -> Value {
        json!({"tenant": self.tenant.as_str(), "client": self.client, "user": self.user})
    }

    /// The Temporal workflow id: tenant-scoped, so one tenant can never address another's.
    pub fn scoped(&self, id: &WorkflowId) -> String {
        format!("{}/{}", self.tenant.as_str(), id.as_str())
    }
}
