//! What callers ask for, as JSON bodies (the same over HTTP and the WebSocket) and as the
//! checked requests the service acts on. Ids are parsed here, once.

use super::ServiceError;
use drift_core::domain::timeline::Via;
use drift_core::domain::{RequestId, WorkflowId};
use serde::Deserialize;
use serde_json::Value;

/// How a call's later states reach the caller: it waits for them (sync, or live), or they go to
/// a callback (async).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Sync,
    Async,
}

/// `POST /v3/workflow/start`, and the WebSocket's `start`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartBody {
    /// The definition to run (its id).
    pub workflow: String,
    /// A published version number, `LATEST` or `ACTIVE` (default: ACTIVE).
    #[serde(default)]
    pub version: Option<String>,
    /// Your own id for the run (letters, digits, `_`, `-`, `.`; default: generated).
    #[serde(default)]
    pub workflow_id: Option<String>,
    /// The run's input, readable by the definition as `$.params`.
    #[serde(default)]
    pub params: Option<Value>,
    /// Where every later state is POSTed as a signed webhook (must be allowed by the gateway).
    #[serde(default)]
    pub callback_url: Option<String>,
    /// `sync` (default) waits for the first screen or the end; `async` answers 202 at once.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Makes the call safe to retry: the same id gets the same answer (default: generated).
    #[serde(default)]
    pub request_id: Option<String>,
}

/// `PUT /v3/workflow/resume/{id}`, and the WebSocket's `resume`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResumeBody {
    /// The answer to the current screen: widget id → value.
    pub view_response: Value,
    /// The `seq` of the screen answered; an answer to an older screen gets 409 `stale_screen`.
    #[serde(default)]
    pub seq: Option<u64>,
    /// Makes the call safe to retry: the same id gets the same answer (default: generated).
    #[serde(default)]
    pub request_id: Option<String>,
    /// Where every later state is POSTed as a signed webhook.
    #[serde(default)]
    pub callback_url: Option<String>,
    /// `sync` (default) waits for the next screen or the end; `async` answers 202 at once.
    #[serde(default)]
    pub mode: Option<Mode>,
}

/// `POST /v3/workflow/{id}/back`: return to the previous screen.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackBody {
    /// The `seq` of the screen left; from an older screen, 409 `stale_screen`.
    #[serde(default)]
    pub seq: Option<u64>,
    /// Makes the call safe to retry: the same id gets the same answer (default: generated).
    #[serde(default)]
    pub request_id: Option<String>,
}

impl CommandBody for BackBody {
    const NAME: &'static str = "back";

    fn into_request(self) -> Result<CommandRequest, ServiceError> {
        Ok(CommandRequest::Back {
            request_id: RequestId::parse_or_new(self.request_id.as_deref())?,
            seq: self.seq,
        })
    }
}

/// `POST /v3/workflow/{id}/disconnected-node/execute`, and the WebSocket's `execute-node`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecuteBody {
    /// An HTTP or SCRIPT node of the workflow that no edge leads to.
    pub node: String,
    /// The node's parameters for this run (literals, or `$` JSONPaths into the context).
    #[serde(default)]
    pub parameters: Option<Value>,
    /// Makes the call safe to retry: the same id gets the same answer (default: generated).
    #[serde(default)]
    pub request_id: Option<String>,
}

/// How the caller wants later states: waiting on them (sync, or live), or at a callback.
#[derive(Debug, Clone, Default)]
pub struct Delivery {
    pub callback_url: Option<String>,
    pub mode: Option<Mode>,
}

pub struct StartRequest {
    pub workflow: String,
    pub version: Option<String>,
    pub workflow_id: Option<WorkflowId>,
    pub params: Value,
    pub delivery: Delivery,
    pub request_id: RequestId,
    /// A retried start with the same key names the same workflow.
    pub idempotency_key: Option<String>,
    /// How the start came in (for the run's timeline): the service counts any start with a
    /// callback as `Async`.
    pub via: Via,
}

pub enum CommandRequest {
    Resume {
        request_id: RequestId,
        seq: Option<u64>,
        view_response: Value,
        delivery: Delivery,
    },
    Execute {
        request_id: RequestId,
        node: String,
        parameters: Option<Value>,
    },
    Back {
        request_id: RequestId,
        seq: Option<u64>,
    },
}

impl CommandRequest {
    pub fn request_id(&self) -> &RequestId {
        match self {
            Self::Resume { request_id, .. } | Self::Execute { request_id, .. } | Self::Back { request_id, .. } => {
                request_id
            }
        }
    }
}

impl StartBody {
    pub fn into_request(self, idempotency_key: Option<String>) -> Result<StartRequest, ServiceError> {
        let params = self.params.unwrap_or_else(|| Value::Object(Default::default()));
        if !params.is_object() {
            return Err(ServiceError::Invalid("params must be a JSON object".into()));
        }
        if idempotency_key.as_ref().is_some_and(|k| k.is_empty() || k.len() > 255) {
            return Err(ServiceError::Invalid("Idempotency-Key must be 1-255 characters".into()));
        }
        Ok(StartRequest {
            workflow: self.workflow,
            version: self.version,
            workflow_id: self.workflow_id.as_deref().map(WorkflowId::parse).transpose()?,
            params,
            delivery: Delivery {
                callback_url: self.callback_url,
                mode: self.mode,
            },
            request_id: RequestId::parse_or_new(self.request_id.as_deref())?,
            idempotency_key,
            // An HTTP call; the service counts it async when it has a callback.
            via: Via::Sync,
        })
    }
}

impl StartRequest {
    /// What this start asks for, as a digest: a retry with the same Idempotency-Key must ask for
    /// the same thing (definition, version, params, mode, callback) to be answered with the
    /// first call's workflow. serde_json's maps are sorted, so the order of a body's keys does
    /// not matter.
    pub fn fingerprint(&self) -> String {
        let asked = serde_json::json!({
            "workflow": self.workflow,
            "version": self.version,
            "workflowId": self.workflow_id.as_ref().map(|w| w.as_str()),
            "params": self.params,
            "mode": self.delivery.mode,
            "callbackUrl": self.delivery.callback_url,
        });
        drift_core::digest::sha256_hex(asked.to_string())
    }
}

/// A body that asks for a command on a running workflow (resume, execute-node).
pub trait CommandBody {
    /// The endpoint's name, for metrics.
    const NAME: &'static str;
    fn into_request(self) -> Result<CommandRequest, ServiceError>;
}

impl CommandBody for ResumeBody {
    const NAME: &'static str = "resume";

    fn into_request(self) -> Result<CommandRequest, ServiceError> {
        if !self.view_response.is_object() {
            return Err(ServiceError::Invalid(
                "viewResponse must be an object like {\"selectedOptions\": {\"widgetId\": value}}".into(),
            ));
        }
        Ok(CommandRequest::Resume {
            request_id: RequestId::parse_or_new(self.request_id.as_deref())?,
            seq: self.seq,
            view_response: self.view_response,
            delivery: Delivery {
                callback_url: self.callback_url,
                mode: self.mode,
            },
        })
    }
}

impl CommandBody for ExecuteBody {
    const NAME: &'static str = "execute";

    fn into_request(self) -> Result<CommandRequest, ServiceError> {
        if self.parameters.as_ref().is_some_and(|p| !p.is_object()) {
            return Err(ServiceError::Invalid("parameters must be a JSON object".into()));
        }
        Ok(CommandRequest::Execute {
            request_id: RequestId::parse_or_new(self.request_id.as_deref())?,
            node: self.node,
            parameters: self.parameters,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(body: Value) -> StartRequest {
        serde_json::from_value::<StartBody>(body)
            .unwrap()
            .into_request(Some("k".into()))
            .unwrap()
    }

    #[test]
    fn the_fingerprint_names_what_was_asked_not_how_it_was_written() {
        let a = start(serde_json::json!({"workflow": "refund", "params": {"a": 1, "b": [1, 2]}}));
        let same = start(serde_json::json!({"params": {"b": [1, 2], "a": 1}, "workflow": "refund", "requestId": "r2"}));
        assert_eq!(
            a.fingerprint(),
            same.fingerprint(),
            "key order and request id do not matter"
        );
        for other in [
            serde_json::json!({"workflow": "bank_account", "params": {"a": 1, "b": [1, 2]}}),
            serde_json::json!({"workflow": "refund", "params": {"a": 2, "b": [1, 2]}}),
            serde_json::json!({"workflow": "refund", "version": "2", "params": {"a": 1, "b": [1, 2]}}),
            serde_json::json!({"workflow": "refund", "mode": "async", "params": {"a": 1, "b": [1, 2]}}),
            serde_json::json!({"workflow": "refund", "callbackUrl": "https://x.example/h", "params": {"a": 1, "b": [1, 2]}}),
        ] {
            assert_ne!(a.fingerprint(), start(other.clone()).fingerprint(), "{other}");
        }
    }
}
