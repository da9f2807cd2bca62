//! The one place where what a request presents (a bearer credential, a stream token in the
//! query, a socket ticket, the original API's headers) becomes who it acts as. Transports parse
//! what came and call `Service::identify`; none of them chooses among credentials itself.

use super::{Credentials, Legacy, Service, ServiceError, is_token};
use drift_core::domain::{Caller, WorkflowId};

/// What a request presents as its identity, as it came.
#[derive(Debug, Default, Clone, Copy)]
pub struct Presented<'a> {
    /// `Authorization: Bearer …`: an API key, a JWT, or a stream token.
    pub bearer: Option<&'a str>,
    /// `?token=` (an `EventSource` cannot set headers): a stream token.
    pub query_token: Option<&'a str>,
    /// `?ticket=` (a browser's WebSocket): a one-use socket ticket.
    pub ticket: Option<&'a str>,
    pub legacy: Legacy<'a>,
}

/// Who a request acts as, and by what.
#[derive(Debug)]
pub enum Identity {
    /// An API key, a JWT or a socket ticket: the caller's scopes and rate limit apply.
    Credential(Caller),
    /// A stream token: reads its one workflow, and nothing else.
    StreamToken(Caller),
}

impl Identity {
    pub fn into_caller(self) -> Caller {
        match self {
            Self::Credential(c) | Self::StreamToken(c) => c,
        }
    }
}

/// Whether a request that presents nothing may go on without an identity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Anonymous {
    /// It is refused (401), like a bad credential.
    Refused,
    /// It goes on as nobody: a WebSocket that will follow workflows with stream tokens.
    Allowed,
}

impl Service {
    /// Who the request acts as. A ticket comes first; a stream token stands for its caller only
    /// on the workflow `on` it names (elsewhere it is refused as a credential); anything else is
    /// authenticated. `None` only when nothing was presented and `anonymous` allows it.
    pub async fn identify(
        &self,
        p: Presented<'_>,
        on: Option<&WorkflowId>,
        anonymous: Anonymous,
    ) -> Result<Option<Identity>, ServiceError> {
        if let Some(ticket) = p.ticket {
            return Ok(Some(Identity::Credential(self.redeem_ticket(ticket).await?)));
        }
        match (p.query_token.or(p.bearer), on) {
            (Some(t), Some(id)) if is_token(t) => Ok(Some(Identity::StreamToken(
                self.authorize(Credentials::StreamToken(t), id)?,
            ))),
            // Without authentication (`--auth none`) the tenant headers still name a caller.
            (None, _) if anonymous == Anonymous::Allowed => {
                Ok(self.authenticate(None, p.legacy).await.ok().map(Identity::Credential))
            }
            (credential, _) => Ok(Some(Identity::Credential(
                self.authenticate(credential, p.legacy).await?,
            ))),
        }
    }

    /// `identify` for requests that must act as someone.
    pub async fn identify_required(&self, p: Presented<'_>, on: Option<&WorkflowId>) -> Result<Identity, ServiceError> {
        self.identify(p, on, Anonymous::Refused)
            .await?
            .ok_or_else(|| ServiceError::Unauthorized("a credential is required".into()))
    }
}
