//! Text fit for logs: what a URL looks like with its password taken out.

/// A URL fit for logs and messages: any password replaced.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(_) => url.to_string(),
        Err(_) => "(an unparseable URL)".to_string(),
    }
}
