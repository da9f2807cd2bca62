//! Identifiers parsed once at the edge, so nothing further in sees an unchecked one.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// An identifier that failed its check; says which rule it broke.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct IdError(pub &'static str);

fn valid(s: &str, max: usize, extra: &[char]) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || extra.contains(&c))
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $max:expr, $extra:expr, $rule:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        // Checked where it enters (`parse`); our own wire formats carry it as a plain string.
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, IdError> {
                if valid(s, $max, $extra) { Ok(Self(s.to_string())) } else { Err(IdError($rule)) }
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A tenant: every workflow, key and channel is scoped by one.
    TenantId, 64, &[], "X_TENANT_ID must be 1-64 letters, digits, '_' or '-'"
);
id_type!(
    /// A workflow id as clients see it (unique within a tenant).
    WorkflowId, 128, &['.', ':'], "workflowId must be 1-128 letters, digits, '_', '-', '.' or ':'"
);
id_type!(
    /// Names one command, so its answer reaches the caller that sent it.
    RequestId, 128, &['.', ':'], "requestId must be 1-128 letters, digits, '_', '-', '.' or ':'"
);

impl WorkflowId {
    pub fn generate() -> Self {
        Self(format!("wf-{}", uuid::Uuid::now_v7()))
    }

    /// The id of a child a CHILD node starts: `parent.instance.n`, with anything that could
    /// escape the tenant scope replaced.
    pub fn derived(parent: &WorkflowId, instance: &str, n: u64) -> Self {
        let instance: String = instance
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_-.:".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Self(format!("{parent}.{instance}.{n}"))
    }
}

impl RequestId {
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    /// The given id, checked, or a fresh one.
    pub fn parse_or_new(s: Option<&str>) -> Result<Self, IdError> {
        s.map_or_else(|| Ok(Self::generate()), Self::parse)
    }
}

/// `tenant/workflowId`: the id Temporal and Redis know a workflow by, so one tenant can never
/// address another's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScopedWorkflowId(String);

impl ScopedWorkflowId {
    pub fn new(tenant: &TenantId, id: &WorkflowId) -> Self {
        Self(format!("{}/{}", tenant.as_str(), id.as_str()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ScopedWorkflowId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who is acting: the tenant and client a call is made for, and the user if one is named.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    pub tenant: TenantId,
    pub client: String,
    pub user: Option<String>,
}

impl Caller {
    pub fn new(tenant: &str, client: &str, user: Option<&str>) -> Result<Self, IdError> {
        if client.is_empty() || client.len() > 128 {
            return Err(IdError("X_CLIENT_ID must be 1-128 characters"));
        }
        Ok(Self {
            tenant: TenantId::parse(tenant)?,
            client: client.to_string(),
            user: user.map(str::to_string),
        })
    }

    /// What a workflow sees as `threadContext`.
    pub fn thread_context(&self) -> Value {
        json!({"tenant": self.tenant.as_str(), "client": self.client, "user": self.user})
    }

    pub fn scoped(&self, id: &WorkflowId) -> ScopedWorkflowId {
        ScopedWorkflowId::new(&self.tenant, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_refuse_what_could_escape_their_scope() {
        assert!(WorkflowId::parse("wf-1.a:b").is_ok());
        for bad in ["", "a/b", "bad id!", &"x".repeat(129)] {
            assert!(WorkflowId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(TenantId::parse("acme/other").is_err());
        let c = Caller::new("acme", "web", None).unwrap();
        assert_eq!(c.scoped(&WorkflowId::parse("w").unwrap()).as_str(), "acme/w");
        let child = WorkflowId::derived(&WorkflowId::parse("p").unwrap(), "a/b", 7);
        assert_eq!(child.as_str(), "p.a_b.7");
    }
}
