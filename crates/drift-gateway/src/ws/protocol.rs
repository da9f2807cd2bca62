//! The WebSocket's JSON protocol, one typed message per command and reply. States are
//! forwarded as the bytes the worker published, never parsed and re-serialized.

use crate::error::{ApiError, ErrorCode};
use drift_core::domain::NodeResult;
use drift_service::{BackBody, ExecuteBody, ResumeBody, StartBody};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// What a client sends: one JSON object per text frame, tagged by `type`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ClientMsg {
    /// Follow a workflow: its current state (or every state after `since`), then each new
    /// one. Authorised by the socket's caller or by the start's `token`.
    #[serde(rename_all = "camelCase")]
    Subscribe {
        workflow_id: String,
        /// Resume after this seq: the states after it are sent, or a `gap` when history no
        /// longer reaches back.
        since: Option<u64>,
        /// A stream token (a start's `streamToken`) for a socket opened without a caller.
        token: Option<String>,
    },
    /// Stop following a workflow.
    #[serde(rename_all = "camelCase")]
    Unsubscribe { workflow_id: String },
    /// Start a workflow (a `POST /v3/workflow/start` body): answered by an `ack` carrying its
    /// id and stream token; the socket follows it, so its states arrive as `state` messages.
    #[serde(rename_all = "camelCase")]
    Start {
        #[serde(flatten)]
        body: StartBody,
        /// As the HTTP `Idempotency-Key` header.
        idempotency_key: Option<String>,
    },
    /// Answer the screen (a resume body plus `workflowId`): the next state arrives as a `state`
    /// message with this `requestId`; a refusal as an `error` with the same `details` as HTTP.
    Resume(Targeted<ResumeBody>),
    /// Go back to the previous screen (a back body plus `workflowId`): the screen returned to
    /// arrives as a `state` message with this `requestId`; a refusal (`cannot_go_back`) as an
    /// `error`.
    Back(Targeted<BackBody>),
    /// Run an HTTP or SCRIPT node of the workflow (an execute body plus `workflowId`):
    /// answered by a `result`.
    ExecuteNode(Targeted<ExecuteBody>),
    /// Answered by `pong`.
    Ping {},
}

impl ClientMsg {
    /// The message's `type`, as sent (names its span).
    pub fn kind(&self) -> &'static str {
        match self {
            ClientMsg::Subscribe { .. } => "subscribe",
            ClientMsg::Unsubscribe { .. } => "unsubscribe",
            ClientMsg::Start { .. } => "start",
            ClientMsg::Resume(_) => "resume",
            ClientMsg::Back(_) => "back",
            ClientMsg::ExecuteNode(_) => "execute-node",
            ClientMsg::Ping {} => "ping",
        }
    }
}

/// A command body addressed to one workflow, with the stream token that may authorise it.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Targeted<B> {
    pub workflow_id: String,
    /// A stream token, for a socket opened without a caller.
    pub token: Option<String>,
    #[serde(flatten)]
    pub body: B,
}

/// The `requestId` of any client message, read even when the rest does not parse, so an
/// error can name the request it answers; and the W3C `traceparent` (and `tracestate`) any
/// message may carry, which puts its handling in the caller's trace.
#[derive(Deserialize)]
pub struct RequestIdOnly {
    #[serde(rename = "requestId")]
    pub request_id: Option<String>,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

/// Parses a client message whose trace fields (any message may carry them, beside its own)
/// were read already: taken out first, as the command bodies accept no field they do not know.
pub fn parse_traced(raw: &str) -> Result<ClientMsg, serde_json::Error> {
    let mut v: serde_json::Map<String, Value> = serde_json::from_str(raw)?;
    v.remove("traceparent");
    v.remove("tracestate");
    serde_json::from_value(Value::Object(v))
}

/// What the gateway sends: one JSON object per text frame, tagged by `type`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ServerMsg<'a> {
    /// A state of a followed workflow; `state` is the workflow's answer, as HTTP gives it.
    #[serde(rename_all = "camelCase")]
    State {
        workflow_id: &'a str,
        seq: u64,
        // Embedded as it is (checked JSON, not serialized again).
        #[schema(value_type = drift_core::domain::WorkflowState)]
        state: &'a RawValue,
    },
    /// The states after `after` are no longer kept; the latest (`latest`) follows.
    #[serde(rename_all = "camelCase")]
    Gap {
        workflow_id: &'a str,
        after: u64,
        latest: u64,
    },
    /// A `start` or `subscribe` was accepted.
    #[serde(rename_all = "camelCase")]
    Ack {
        request_id: Option<&'a str>,
        workflow_id: &'a str,
        /// After a `start`: the token that reads this workflow (as HTTP's `streamToken`).
        #[serde(skip_serializing_if = "Option::is_none")]
        stream_token: Option<&'a str>,
    },
    /// The answer to an `execute-node`.
    #[serde(rename_all = "camelCase")]
    Result {
        #[serde(flatten)]
        result: NodeResult,
        request_id: &'a str,
    },
    /// A command or message was refused: the status, code, message and `details` HTTP would
    /// answer, tagged with the request it answers.
    #[serde(rename_all = "camelCase")]
    Error {
        request_id: Option<&'a str>,
        status: u16,
        code: ErrorCode,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<serde_json::Value>)]
        details: Option<&'a Value>,
    },
    /// The answer to `ping`.
    Pong,
}

impl<'a> ServerMsg<'a> {
    /// Service errors and rejections on the socket: the same status, code and message an HTTP
    /// caller would get, tagged with the request they answer.
    pub fn error(request_id: Option<&'a str>, e: &'a ApiError) -> Self {
        ServerMsg::Error {
            request_id,
            status: e.status().as_u16(),
            code: e.code,
            message: &e.message,
            details: e.details.as_ref(),
        }
    }

    pub fn to_text(&self) -> axum::extract::ws::Message {
        axum::extract::ws::Message::Text(serde_json::to_string(self).expect("server messages serialize").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn client_messages_parse_with_their_bodies_and_server_messages_keep_their_wire_shape() {
        let m: ClientMsg = serde_json::from_value(json!({"type": "resume", "requestId": "r", "workflowId": "w",
            "viewResponse": {"selectedOptions": {"a": 1}}, "seq": 2}))
        .unwrap();
        let ClientMsg::Resume(t) = m else { panic!("resume") };
        assert_eq!(
            (t.workflow_id.as_str(), t.body.seq, t.body.request_id.as_deref()),
            ("w", Some(2), Some("r"))
        );
        let m: ClientMsg = serde_json::from_value(json!({"type": "start", "requestId": "r1", "workflow": "x",
            "params": {}, "idempotencyKey": "k"}))
        .unwrap();
        assert!(
            matches!(m, ClientMsg::Start { ref body, idempotency_key: Some(_) } if body.request_id.as_deref() == Some("r1"))
        );

        // A state embeds its body as it is.
        let body = drift_core::domain::JsonText::of(&json!({"seq": 3}));
        for id in ["w", "wf-\"quoted\"\\é"] {
            let framed = ServerMsg::State {
                workflow_id: id,
                seq: 3,
                state: body.raw(),
            }
            .to_text();
            let axum::extract::ws::Message::Text(text) = framed else {
                panic!("text")
            };
            assert_eq!(
                serde_json::from_str::<Value>(text.as_str()).unwrap(),
                json!({"type": "state", "workflowId": id, "seq": 3, "state": {"seq": 3}})
            );
        }
        let ack = serde_json::to_value(ServerMsg::Ack {
            request_id: None,
            workflow_id: "w",
            stream_token: None,
        })
        .unwrap();
        assert_eq!(ack, json!({"type": "ack", "requestId": null, "workflowId": "w"}));
        assert_eq!(serde_json::to_value(ServerMsg::Pong).unwrap(), json!({"type": "pong"}));
    }
}
