//! The workflow API's paths, written once: the router mounts these templates, answers link to
//! them, and the listener recognises an event stream by one.

/// A path with at most one `{id}` segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route(&'static str);

pub const START: Route = Route("/v3/workflow/start");
pub const WORKFLOW: Route = Route("/v3/workflow/{id}");
pub const EVENTS: Route = Route("/v3/workflow/{id}/events");
pub const DELIVERIES: Route = Route("/v3/workflow/{id}/deliveries");
pub const TIMELINE: Route = Route("/v3/workflow/{id}/timeline");
/// A tenant's webhooks over a time range, sent again.
pub const REPLAY: Route = Route("/v3/webhooks/replay");
/// A tenant's runs, filtered and paged (Temporal's visibility).
pub const RUNS: Route = Route("/v3/workflows");
/// One state's webhook sent again (`{seq}`: the state's).
pub const RESEND: Route = Route("/v3/workflow/{id}/deliveries/{seq}/resend");
pub const RESUME: Route = Route("/v3/workflow/resume/{id}");
pub const EXECUTE: Route = Route("/v3/workflow/{id}/disconnected-node/execute");
pub const BACK: Route = Route("/v3/workflow/{id}/back");
pub const LINKS: Route = Route("/v3/workflow/{id}/links");
pub const TERMINATE: Route = Route("/v3/workflow/terminate/{id}");
pub const WS: Route = Route("/v3/ws");
pub const TICKET: Route = Route("/v3/auth/ticket");

impl Route {
    /// What the router mounts (`{id}` is axum's capture syntax).
    pub const fn template(self) -> &'static str {
        self.0
    }

    /// The path for one workflow.
    pub fn to(self, id: &str) -> String {
        self.0.replacen("{id}", id, 1)
    }

    /// The id in `path` when `path` is this route: one non-empty segment.
    pub fn id_in(self, path: &[u8]) -> Option<&[u8]> {
        let (before, after) = self.0.split_once("{id}")?;
        let id = path.strip_prefix(before.as_bytes())?.strip_suffix(after.as_bytes())?;
        (!id.is_empty() && !id.contains(&b'/')).then_some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_writes_and_reads_back_one_id_segment() {
        assert_eq!(EVENTS.to("w-1"), "/v3/workflow/w-1/events");
        assert_eq!(EVENTS.id_in(EVENTS.to("w-1").as_bytes()), Some(&b"w-1"[..]));
        assert_eq!(EVENTS.id_in(b"/v3/workflow//events"), None);
        assert_eq!(EVENTS.id_in(b"/v3/workflow/a/b/events"), None);
        assert_eq!(EVENTS.id_in(b"/v3/workflow/a"), None);
        assert_eq!(WORKFLOW.id_in(b"/v3/workflow/a"), Some(&b"a"[..]));
        assert_eq!(START.id_in(b"/v3/workflow/start"), None, "no id to read");
    }
}
