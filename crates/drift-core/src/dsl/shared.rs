//! One copy of each definition per process, shared by every run of it. A run's start carries
//! its definition (so no edit or deletion can strand it), and a worker keeps up to
//! `--worker-cached-workflows` runs in memory between their steps: without sharing, each held
//! its own parsed copy, about 2.3× the definition's JSON (85 KB for a 37 KB definition).

use super::Definition;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};

/// Distinct definitions of one id and version kept for sharing; past this (a SNAPSHOT edited
/// again and again), a new one is used unshared rather than compared against ever more.
const PER_VERSION: usize = 8;

/// Live definitions by id and version. Held weakly: a definition goes when its last run does.
/// Its entry goes at the next sharing of that id and version, or in a sweep of the table.
#[derive(Default)]
struct Table {
    by_version: HashMap<(String, String), Vec<Weak<Definition>>>,
    /// Entries after the last sweep: the next sweep comes when the table has doubled.
    swept_at: usize,
}

static TABLE: LazyLock<Mutex<Table>> = LazyLock::new(Default::default);

/// `def`, or an equal definition some other run holds already (the same content, so the same
/// run: sharing is invisible to what a run does). Compares content, never trusts the id and
/// version alone: two tenants, or two SNAPSHOT edits, may share both with different nodes.
pub fn shared(def: Arc<Definition>) -> Arc<Definition> {
    let mut table = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
    let key = (def.id.clone(), def.version.clone());
    let kept = table.by_version.entry(key).or_default();
    kept.retain(|w| w.strong_count() > 0);
    if let Some(same) = kept.iter().filter_map(Weak::upgrade).find(|d| **d == *def) {
        return same;
    }
    if kept.len() < PER_VERSION {
        kept.push(Arc::downgrade(&def));
    }
    let entries = table.by_version.len();
    if entries > 2 * table.swept_at.max(64) {
        table.by_version.retain(|_, kept| {
            kept.retain(|w| w.strong_count() > 0);
            !kept.is_empty()
        });
        table.swept_at = table.by_version.len();
    }
    def
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a_definition(id: &str, version: &str, message: &str) -> Arc<Definition> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "id": id, "version": version, "startNode": "done",
                "states": {"done": {"node": {"type": "SUCCESS", "disposition": {"message": message}}}}
            }))
            .expect("a definition"),
        )
    }

    #[test]
    fn equal_definitions_read_apart_become_one_copy_and_different_ones_stay_apart() {
        let first = shared(a_definition("shared-a", "1", "hi"));
        let again = shared(a_definition("shared-a", "1", "hi"));
        assert!(
            Arc::ptr_eq(&first, &again),
            "an equal definition is the copy already held"
        );

        let edited = shared(a_definition("shared-a", "1", "hello"));
        assert!(
            !Arc::ptr_eq(&first, &edited),
            "the same id and version with other content stays apart"
        );
        assert_eq!(
            edited.states["done"],
            a_definition("shared-a", "1", "hello").states["done"]
        );
        let other_version = shared(a_definition("shared-a", "2", "hi"));
        assert!(!Arc::ptr_eq(&first, &other_version));
    }

    #[test]
    fn a_definition_no_run_holds_any_more_is_let_go() {
        let held = shared(a_definition("shared-b", "1", "hi"));
        let weak = Arc::downgrade(&held);
        drop(held);
        assert!(weak.upgrade().is_none(), "the table does not keep a definition alive");
        let fresh = a_definition("shared-b", "1", "hi");
        let back = shared(fresh.clone());
        assert!(Arc::ptr_eq(&back, &fresh), "a new copy is shared from then on");
    }

    #[test]
    fn many_edits_of_one_version_are_compared_against_a_bounded_few() {
        let held: Vec<_> = (0..PER_VERSION + 4)
            .map(|n| shared(a_definition("shared-c", "1", &format!("edit {n}"))))
            .collect();
        let key = ("shared-c".to_string(), "1".to_string());
        let kept = TABLE.lock().unwrap().by_version[&key].len();
        assert_eq!(kept, PER_VERSION);
        // One past the bound is still used, unshared: each run holds its own, as before.
        let late = shared(a_definition("shared-c", "1", &format!("edit {}", PER_VERSION + 1)));
        assert!(!Arc::ptr_eq(&late, &held[PER_VERSION + 1]));
        assert_eq!(*late, *held[PER_VERSION + 1]);
    }
}
