//! A small client of a running gateway's API for the command-line tools (`bench`,
//! `definitions`): where it is, and the credential to call it with.

use crate::config::GatewayClientArgs;
use anyhow::Context;
use serde_json::{Value, json};

pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    /// The `Authorization` header value.
    pub auth: String,
}

impl Client {
    pub fn new(a: &GatewayClientArgs) -> anyhow::Result<Self> {
        let key = match &a.api_key {
            Some(k) => k.clone(),
            None => std::fs::read_to_string(a.data_dir.join("dev-api-key"))
                .map(|k| k.trim().to_string())
                .context("no --api-key (DRIFT_API_KEY), and no dev key in the data folder; pass one")?,
        };
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()?,
            base: a.url.trim_end_matches('/').to_string(),
            auth: format!("Bearer {key}"),
        })
    }

    /// The same credential, at another gateway of the deployment.
    pub fn at(&self, base: &str) -> Self {
        Self {
            http: self.http.clone(),
            base: base.trim_end_matches('/').to_string(),
            auth: self.auth.clone(),
        }
    }

    /// Calls the API; answers the status and the JSON body (or the text as a JSON string).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(reqwest::StatusCode, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("authorization", &self.auth);
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req
            .send()
            .await
            .with_context(|| format!("calling {} (is the gateway running? pass --url)", self.base))?;
        let status = r.status();
        let text = r.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    /// Saves `body` as the SNAPSHOT at `path` (`/v3/definitions/{id}` or `/v3/nodes/{id}`),
    /// publishes it (an unchanged SNAPSHOT answers the LATEST version) and, with `activate`,
    /// makes that version ACTIVE.
    pub async fn publish(&self, path: &str, id: &str, body: &Value, activate: bool) -> anyhow::Result<Published> {
        let (status, r) = self.call(reqwest::Method::PUT, path, Some(body)).await?;
        if !status.is_success() {
            return Err(refused(&format!("saving {id}"), status, &r));
        }
        let (status, r) = self
            .call(reqwest::Method::POST, &format!("{path}/publish"), None)
            .await?;
        if !status.is_success() {
            return Err(refused(&format!("publishing {id}"), status, &r));
        }
        let version = r["version"].as_u64().context("publish answered no version")?;
        let changed = r["published"] == true;
        if activate {
            let (status, r) = self
                .call(
                    reqwest::Method::POST,
                    &format!("{path}/activate"),
                    Some(&json!({"version": version})),
                )
                .await?;
            if !status.is_success() {
                return Err(refused(&format!("activating {id} v{version}"), status, &r));
            }
        }
        Ok(Published { version, changed })
    }
}

/// What `Client::publish` did.
pub struct Published {
    /// The version published (or the LATEST, when the SNAPSHOT had not changed).
    pub version: u64,
    /// Whether the SNAPSHOT was new, and so became a new version.
    pub changed: bool,
}

/// A call the gateway refused, as an error: what was tried, the status and the gateway's message.
pub fn refused(what: &str, status: reqwest::StatusCode, body: &Value) -> anyhow::Error {
    let msg = body["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| body.to_string());
    anyhow::anyhow!("{what}: {status}: {msg}")
}

/// What `drift dev` wrote in its data folder (`endpoints.json`) for the tools: where its
/// Temporal and Redis are, its process, tenant and key prefix. Null when there is none.
pub fn dev_endpoints(data_dir: &std::path::Path) -> Value {
    std::fs::read_to_string(data_dir.join("endpoints.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// The Redis in `dev_endpoints`' answer: one server or a cluster.
pub fn dev_redis(endpoints: &Value) -> Option<drift_bus::RedisTarget> {
    let cluster: Vec<String> = endpoints["redisCluster"]
        .as_str()
        .map(|c| c.split(',').map(String::from).collect())
        .unwrap_or_default();
    drift_bus::RedisTarget::from_flags(endpoints["redisUrl"].as_str(), &cluster)
        .ok()
        .flatten()
}
