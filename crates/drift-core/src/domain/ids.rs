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
/// address another's. On the wire (activity inputs) it is that string, checked when read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ScopedWorkflowId(String);

impl ScopedWorkflowId {
    pub fn new(tenant: &TenantId, id: &WorkflowId) -> Self {
        Self(format!("{}/{}", tenant.as_str(), id.as_str()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Its tenant and workflow id.
    pub fn parts(&self) -> (&str, &str) {
        self.0.split_once('/').expect("made of a tenant and a workflow id")
    }
}

impl TryFrom<String> for ScopedWorkflowId {
    type Error = IdError;

    fn try_from(s: String) -> Result<Self, IdError> {
        let (tenant, id) = s
            .split_once('/')
            .ok_or(IdError("a scoped workflow id is tenant/workflowId"))?;
        Ok(Self::new(&TenantId::parse(tenant)?, &WorkflowId::parse(id)?))
    }
}

impl From<ScopedWorkflowId> for String {
    fn from(id: ScopedWorkflowId) -> String {
        id.0
    }
}

impl std::fmt::Display for ScopedWorkflowId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a credential allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Start workflows.
    Start,
    /// Resume, execute-node, terminate.
    Drive,
    /// Read states: GET, SSE, WebSocket subscribe.
    Read,
    /// Create and change definitions.
    DefinitionsWrite,
    /// Everything.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Scope::Start,
        Scope::Drive,
        Scope::Read,
        Scope::DefinitionsWrite,
        Scope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Start => "workflows:start",
            Scope::Drive => "workflows:drive",
            Scope::Read => "workflows:read",
            Scope::DefinitionsWrite => "definitions:write",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Result<Self, IdError> {
        Self::ALL.into_iter().find(|x| x.as_str() == s).ok_or(IdError(
            "scopes are workflows:start, workflows:drive, workflows:read, definitions:write or admin",
        ))
    }
}

/// A set of scopes (small and `Copy`: a bit per scope).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u8);

impl Scopes {
    pub fn of(scopes: &[Scope]) -> Self {
        Self(scopes.iter().fold(0, |acc, s| acc | 1 << *s as u8))
    }

    pub fn all() -> Self {
        Self::of(&Scope::ALL)
    }

    /// Parses a space- or comma-separated list, as in OAuth's `scope` claim.
    pub fn parse(list: &str) -> Result<Self, IdError> {
        let scopes = list
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(Scope::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::of(&scopes))
    }

    /// Whether `scope` is granted (`admin` grants everything).
    pub fn allows(self, scope: Scope) -> bool {
        self.0 & (1 << scope as u8 | 1 << Scope::Admin as u8) != 0
    }
}

impl std::fmt::Display for Scopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = Scope::ALL
            .into_iter()
            .filter(|s| self.0 & (1 << *s as u8) != 0)
            .map(Scope::as_str)
            .collect();
        f.write_str(&names.join(" "))
    }
}

/// Who is acting: the tenant and client a credential names, the acting user, and what the
/// credential allows.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    pub tenant: TenantId,
    pub client: String,
    pub user: Option<String>,
    pub scopes: Scopes,
}

impl Caller {
    pub fn new(tenant: &str, client: &str, user: Option<&str>, scopes: Scopes) -> Result<Self, IdError> {
        if client.is_empty() || client.len() > 128 {
            return Err(IdError("X_CLIENT_ID must be 1-128 characters"));
        }
        if user.is_some_and(|u| u.len() > 256) {
            return Err(IdError("X_USERNAME_ID is longer than 256 characters"));
        }
        Ok(Self {
            tenant: TenantId::parse(tenant)?,
            client: client.to_string(),
            user: user.map(str::to_string),
            scopes,
        })
    }

    /// What a workflow sees as `threadContext`.
    pub fn thread_context(&self) -> Value {
        json!({"tenant": self.tenant.as_str(), "client": self.client, "user": self.user})
    }

    pub fn scoped(&self, id: &WorkflowId) -> ScopedWorkflowId {
        ScopedWorkflowId::new(&self.tenant, id)
    }

    pub fn may(&self, scope: Scope) -> bool {
        self.scopes.allows(scope)
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
        let c = Caller::new("acme", "web", None, Scopes::default()).unwrap();
        assert_eq!(c.scoped(&WorkflowId::parse("w").unwrap()).as_str(), "acme/w");
        let child = WorkflowId::derived(&WorkflowId::parse("p").unwrap(), "a/b", 7);
        assert_eq!(child.as_str(), "p.a_b.7");
    }

    #[test]
    fn scopes_parse_and_admin_allows_everything() {
        let s = Scopes::parse("workflows:read, workflows:start").unwrap();
        assert!(s.allows(Scope::Read) && s.allows(Scope::Start) && !s.allows(Scope::Drive));
        assert_eq!(s.to_string(), "workflows:start workflows:read");
        assert!(Scopes::parse("admin").unwrap().allows(Scope::DefinitionsWrite));
        assert!(Scopes::parse("workflows:everything").is_err());
        assert!(!Scopes::default().allows(Scope::Read));
    }
}
