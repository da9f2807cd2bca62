//! The workflow's input, its command signal and the publishing activity's input, read straight
//! from their payloads' JSON text. The SDK's serde converter parses every payload into a
//! `serde_json::Value` first and reads the type out of that through `erased_serde`; a start's
//! input carries the whole definition, so those two steps were the largest Drift-only share of
//! the worker's CPU per round (docs/performance.md). What goes out is written as the SDK writes
//! it (`json/plain`), so a run started before this reads the same, and histories replay
//! unchanged.

use drift_bus::Publication;
use drift_core::domain::Command;
use drift_core::session::WorkflowInput;
use temporalio_common::data_converters::{
    ErasedSerdePayloadConverter, PayloadConversionError, SerializationContext, TemporalDeserializable,
    TemporalSerializable,
};
use temporalio_common::protos::temporal::api::common::v1::Payload;
use temporalio_common::protos::{ENCODING_PAYLOAD_KEY, JSON_ENCODING_VAL};

/// A payload of `T`, read from its bytes (see the module's note).
#[derive(Debug, Clone, PartialEq)]
pub struct Json<T>(pub T);

/// How `T` reads its JSON text: as serde reads it, unless the type knows a quicker way.
pub trait FromJson: serde::de::DeserializeOwned {
    fn from_json(text: &[u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(text)
    }
}

impl FromJson for WorkflowInput {
    fn from_json(text: &[u8]) -> serde_json::Result<Self> {
        WorkflowInput::from_json(text)
    }
}

impl FromJson for Command {}

impl FromJson for Publication {}

impl<T: serde::Serialize> TemporalSerializable for Json<T> {
    fn as_serde(&self) -> Result<&dyn erased_serde::Serialize, PayloadConversionError> {
        Ok(&self.0)
    }
}

impl<T: FromJson> Json<T> {
    fn read(payload: &Payload) -> Result<Self, PayloadConversionError> {
        if payload.metadata.get(ENCODING_PAYLOAD_KEY).map(Vec::as_slice) != Some(JSON_ENCODING_VAL.as_bytes()) {
            return Err(PayloadConversionError::WrongEncoding);
        }
        T::from_json(&payload.data)
            .map(Json)
            .map_err(|e| PayloadConversionError::EncodingError(Box::new(e)))
    }
}

impl<T: FromJson> TemporalDeserializable for Json<T> {
    fn from_serde(
        _: &dyn ErasedSerdePayloadConverter,
        _: &SerializationContext<'_>,
        payload: Payload,
    ) -> Result<Self, PayloadConversionError> {
        Self::read(&payload)
    }

    fn from_payload(_: &SerializationContext<'_>, payload: Payload) -> Result<Self, PayloadConversionError> {
        Self::read(&payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drift_core::domain::{RequestId, WorkflowStart};
    use serde_json::json;
    use temporalio_common::data_converters::{GenericPayloadConverter, PayloadConverter, SerializationContextData};

    fn input() -> WorkflowInput {
        let definition = serde_json::from_value(json!({
            "id": "w", "startNode": "ask", "states": {
                "ask": {"node": {"type": "INSTRUCTION", "layoutId": "ask", "inputOptions": [
                    {"id": "pick", "tags": {"values": ["ui.dropdown"]},
                     "possibleValues": [{"displayValue": "A", "value": "a"}]}
                ]}, "nextNode": "done"},
                "done": {"node": {"type": "SUCCESS"}}
            }
        }))
        .unwrap();
        let start = WorkflowStart {
            params: json!({"amount": 3}),
            execution_timeout_ms: Some(60_000),
            runs_indexed: true,
            lean_index: true,
            ..crate::workflow::tests::a_start(definition)
        };
        WorkflowInput { start, carry: None }
    }

    fn command() -> Command {
        Command::Resume {
            request_id: RequestId::parse_or_new(Some("r-1")).unwrap(),
            seq: Some(1),
            view_response: json!({"selectedOptions": {"pick": "a"}}),
            callback: None,
        }
    }

    /// Through the converter a worker and a client use, as the SDK writes and reads payloads.
    fn convert<R>(f: impl FnOnce(&PayloadConverter, &SerializationContext<'_>) -> R) -> R {
        let converter = PayloadConverter::default();
        let data = SerializationContextData::None;
        f(&converter, &SerializationContext::new(&data, &converter))
    }

    fn read<U: TemporalDeserializable + 'static>(payload: Payload) -> Result<U, PayloadConversionError> {
        convert(|converter, ctx| converter.from_payload(ctx, payload))
    }

    fn round_trip<T, U>(out: &T) -> (Payload, Result<U, PayloadConversionError>)
    where
        T: TemporalSerializable + 'static,
        U: TemporalDeserializable + 'static,
    {
        let payload = convert(|converter, ctx| converter.to_payload(ctx, out)).unwrap();
        (payload.clone(), read(payload))
    }

    #[test]
    fn a_start_a_command_and_a_publication_read_from_their_bytes_are_what_was_sent_and_go_out_as_the_sdk_writes_them() {
        let (wire, back) = round_trip::<_, Json<WorkflowInput>>(&Json(input()));
        assert_eq!(back.unwrap().0, input());
        let (plain, _) = round_trip::<_, WorkflowInput>(&input());
        assert_eq!(
            wire, plain,
            "the same payload as the bare type's: older runs replay unchanged"
        );
        // A run started by a gateway before the wrapper (the SDK's own serde payload) reads the same.
        let (_, old) = round_trip::<_, Json<WorkflowInput>>(&input());
        assert_eq!(old.unwrap().0, input());

        let (wire, back) = round_trip::<_, Json<Command>>(&Json(command()));
        assert_eq!(back.unwrap().0, command());
        let (plain, old) = round_trip::<_, Json<Command>>(&command());
        assert_eq!((wire, old.unwrap().0), (plain, command()));

        let p = Publication::state(
            &input().start.scoped_id(),
            &drift_core::domain::WorkflowState::bare("wf-1", drift_core::domain::WorkflowStatus::Waiting, 1),
        );
        let (wire, back) = round_trip::<_, Json<Publication>>(&Json(p.clone()));
        let (plain, old) = round_trip::<_, Json<Publication>>(&p);
        assert_eq!(wire, plain);
        let as_json = |p: &Publication| serde_json::to_value(p).unwrap();
        assert_eq!(as_json(&back.unwrap().0), as_json(&p));
        assert_eq!(as_json(&old.unwrap().0), as_json(&p));
    }

    #[test]
    fn a_payload_that_is_not_json_of_the_type_is_refused_with_the_reason_not_a_panic() {
        let (_, wrong) = round_trip::<_, Json<Command>>(&json!({"type": "nothing"}));
        assert!(
            matches!(wrong, Err(PayloadConversionError::EncodingError(_))),
            "{wrong:?}"
        );
        let mut binary = round_trip::<_, Json<Command>>(&Json(command())).0;
        binary
            .metadata
            .insert(ENCODING_PAYLOAD_KEY.to_string(), b"binary/plain".to_vec());
        let read = read::<Json<Command>>(binary);
        assert!(read.is_err(), "an encoding this is not: {read:?}");
    }
}
