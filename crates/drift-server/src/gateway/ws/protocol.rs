//! The WebSocket's JSON protocol, one typed message per command and reply. States are
//! forwarded as the bytes the worker published, never parsed and re-serialized.

use crate::domain::NodeResult;
use crate::gateway::error::ApiError;
use crate::service::{ExecuteBody, ResumeBody, StartBody};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ClientMsg {
    #[serde(rename_all = "camelCase")]
    Subscribe {
        workflow_id: String,
        since: Option<u64>,
        token: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    Unsubscribe {
        workflow_id: String,
    },
    #[serde(rename_all = "camelCase")]
    Start {
        #[serde(flatten)]
        body: StartBody,
        idempotency_key: Option<String>,
    },
    Resume(Targeted<ResumeBody>),
    ExecuteNode(Targeted<ExecuteBody>),
    Ping {},
}

/// A command body addressed to one workflow, with the stream token that may authorise it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Targeted<B> {
    pub workflow_id: String,
    pub token: Option<String>,
    #[serde(flatten)]
    pub body: B,
}

/// The `requestId` of any client message, read even when the rest does not parse, so an
/// error can name the request it answers.
#[derive(Deserialize)]
pub struct RequestIdOnly {
    #[serde(rename = "requestId")]
    pub request_id: Option<String>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ServerMsg<'a> {
    /// A workflow state; its body embedded as it is (checked JSON, not serialized again).
    #[serde(rename_all = "camelCase")]
    State {
        workflow_id: &'a str,
        seq: u64,
        state: &'a RawValue,
    },
    #[serde(rename_all = "camelCase")]
    Gap {
        workflow_id: &'a str,
        after: u64,
        latest: u64,
    },
    #[serde(rename_all = "camelCase")]
    Ack {
        request_id: Option<&'a str>,
        workflow_id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        stream_token: Option<&'a str>,
    },
    #[serde(rename_all = "camelCase")]
    Result {
        #[serde(flatten)]
        result: NodeResult,
        request_id: &'a str,
    },
    #[serde(rename_all = "camelCase")]
    Error {
        request_id: Option<&'a str>,
        status: u16,
        code: &'a str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        details: Option<&'a Value>,
    },
    Pong,
}

impl<'a> ServerMsg<'a> {
    /// Service errors and rejections on the socket: the same status, code and message an HTTP
    /// caller would get, tagged with the request they answer.
    pub fn error(request_id: Option<&'a str>, e: &'a ApiError) -> Self {
        ServerMsg::Error {
            request_id,
            status: e.status.as_u16(),
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
        let body = crate::domain::JsonText::of(&json!({"seq": 3}));
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
