//! JSON text checked once: serde wrote it, or the hub parsed it out of a message. Every
//! transport then hands it on as it is (an HTTP body, an SSE `data:` line), and serde embeds it
//! where it is part of a larger message (a WebSocket `state`), without scanning it again.

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct JsonText(Arc<RawValue>);

impl JsonText {
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Self {
        Self(Arc::from(
            serde_json::value::to_raw_value(value).expect("domain values serialize"),
        ))
    }

    /// Text another parse already checked (an envelope's body).
    pub fn from_raw(raw: &RawValue) -> Self {
        Self(Arc::from(raw.to_owned()))
    }

    pub fn raw(&self) -> &RawValue {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// The text as a body, sharing this allocation.
    pub fn bytes(&self) -> Bytes {
        Bytes::from_owner(self.clone())
    }
}

impl AsRef<[u8]> for JsonText {
    fn as_ref(&self) -> &[u8] {
        self.0.get().as_bytes()
    }
}

impl Serialize for JsonText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}
