//! Checks every request passes before routing, whichever path it came by (hyper or the
//! listener's own): a request whose target host or credential is ambiguous is refused here
//! with a 400, before authentication reads either.

use super::error::ApiError;
use axum::extract::Request;
use axum::http::{HeaderMap, Version, header};
use axum::response::{IntoResponse, Response};
use futures::future::Either;
use std::future::Ready;
use std::task::{Context, Poll};

/// Headers that name who is calling: more than one of any is a 400, never "the first wins".
const CREDENTIAL_HEADERS: [&str; 4] = ["authorization", "x_tenant_id", "x_client_id", "x_username_id"];

/// The request's framing problem, if any: RFC 9112 §3.2 (a server MUST answer 400 to an
/// HTTP/1.1 request without `Host`, or with more than one), and one credential per request.
pub fn refusal(version: Version, headers: &HeaderMap) -> Option<&'static str> {
    let hosts = headers.get_all(header::HOST).iter().count();
    if version == Version::HTTP_11 && hosts == 0 {
        return Some("an HTTP/1.1 request must carry a Host header (RFC 9112, section 3.2)");
    }
    if hosts > 1 {
        return Some("a request must carry one Host header, not several (RFC 9112, section 3.2)");
    }
    if CREDENTIAL_HEADERS
        .iter()
        .any(|name| headers.get_all(*name).iter().nth(1).is_some())
    {
        return Some(
            "a request must carry one Authorization header (and at most one X_TENANT_ID, X_CLIENT_ID and \
             X_USERNAME_ID): several make the credential ambiguous",
        );
    }
    None
}

/// The checks as a layer. Not `middleware::from_fn`: that boxes a future holding the request
/// and the rest of the stack, about 1 KB for as long as a sync call waits; this one's future is
/// the inner service's, or the refusal.
#[derive(Clone, Copy)]
pub struct Checks;

impl<S> tower::Layer<S> for Checks {
    type Service = Checked<S>;

    fn layer(&self, inner: S) -> Checked<S> {
        Checked(inner)
    }
}

#[derive(Clone)]
pub struct Checked<S>(S);

impl<S> tower::Service<Request> for Checked<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match refusal(request.version(), request.headers()) {
            Some(why) => Either::Left(std::future::ready(Ok(ApiError::bad_request(why).into_response()))),
            None => Either::Right(self.0.call(request)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn host_is_required_once_on_http_1_1_only() {
        assert!(refusal(Version::HTTP_11, &headers(&[])).is_some());
        assert!(refusal(Version::HTTP_11, &headers(&[("host", "a"), ("host", "b")])).is_some());
        assert!(refusal(Version::HTTP_11, &headers(&[("host", "a")])).is_none());
        assert!(refusal(Version::HTTP_10, &headers(&[])).is_none());
        assert!(refusal(Version::HTTP_2, &headers(&[])).is_none());
    }

    #[test]
    fn a_second_credential_header_is_refused() {
        let two = headers(&[
            ("host", "a"),
            ("authorization", "Bearer x"),
            ("authorization", "Bearer y"),
        ]);
        assert!(refusal(Version::HTTP_11, &two).is_some());
        let tenants = headers(&[("host", "a"), ("x_tenant_id", "t1"), ("x_tenant_id", "t2")]);
        assert!(refusal(Version::HTTP_11, &tenants).is_some());
        let one = headers(&[("host", "a"), ("authorization", "Bearer x"), ("x_tenant_id", "t1")]);
        assert!(refusal(Version::HTTP_11, &one).is_none());
    }
}
