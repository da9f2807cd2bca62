//! Where Back returns to: the screens answered since the last HTTP or CHILD node. Each keeps
//! only what the context changed between it and the next newer one (an undo), not a copy of
//! the context, so a run with a large context carries a few bytes per screen across
//! continue-as-new instead of one copy each. The newest is held whole in memory, ready to
//! return to.

use super::{Cursor, View};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How many screens Back can go through.
pub const BACK_KEPT: usize = 32;

/// A screen Back may return to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackPoint {
    pub instance: String,
    pub view: View,
    /// The answer it was given, for the client to prefill.
    pub answer: Value,
    /// The run as it was when the screen was shown, whole: the newest point's in memory (and
    /// every point's in carries of releases before undos).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cursor: Option<Cursor>,
    /// Otherwise what turns the next newer point's context (for the newest one in a carry: the
    /// run's context when it was carried) into this point's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    undo: Option<Undo>,
}

/// Top-level context fields to set and to remove.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct Undo {
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    set: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    unset: Vec<String>,
}

impl Undo {
    /// What turns `from` into `to` (both contexts, so objects).
    fn between(from: &Value, to: &Value) -> Self {
        let empty = Map::new();
        let (from, to) = (from.as_object().unwrap_or(&empty), to.as_object().unwrap_or(&empty));
        Undo {
            set: to
                .iter()
                .filter(|(k, v)| from.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            unset: from.keys().filter(|k| !to.contains_key(*k)).cloned().collect(),
        }
    }

    fn apply(&self, ctx: &Value) -> Value {
        let mut out = ctx.as_object().cloned().unwrap_or_default();
        for k in &self.unset {
            out.remove(k);
        }
        out.extend(self.set.iter().map(|(k, v)| (k.clone(), v.clone())));
        Value::Object(out)
    }
}

/// A screen Back returned to: where the run goes back to.
#[derive(Debug, Clone, PartialEq)]
pub struct Returned {
    pub instance: String,
    pub view: View,
    pub answer: Value,
    pub cursor: Cursor,
}

/// Back's screens, oldest first, at most [`BACK_KEPT`]. In memory the newest holds its cursor
/// whole; each older one holds the undo of the next.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackStack {
    points: Vec<BackPoint>,
    /// Older screens were let go (past [`BACK_KEPT`], or to fit a carry): Back stops short of
    /// the first screen since the last HTTP or CHILD node.
    dropped: bool,
}

impl BackStack {
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether older screens were let go, so Back reaches less far than the flow would allow.
    pub fn dropped(&self) -> bool {
        self.dropped
    }

    /// An HTTP or CHILD node ran: nothing before it can be returned to.
    pub fn clear(&mut self) {
        self.points.clear();
        self.dropped = false;
    }

    /// A screen was answered: `shown` is the run as it was while the screen was shown.
    pub fn push(&mut self, instance: String, view: View, answer: Value, shown: Cursor) {
        if let Some(top) = self.points.last_mut()
            && let Some(cursor) = top.cursor.take()
        {
            top.undo = Some(Undo::between(shown.ctx(), cursor.ctx()));
        }
        self.points.push(BackPoint {
            instance,
            view,
            answer,
            cursor: Some(shown),
            undo: None,
        });
        if self.points.len() > BACK_KEPT {
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        self.points.remove(0);
        self.dropped = true;
    }

    /// Returns to the newest screen, if any.
    pub fn pop(&mut self) -> Option<Returned> {
        let p = self.points.pop()?;
        // Only a carried newest point holds an undo, and `carried_in` made it whole.
        let cursor = p.cursor.expect("the newest point is held whole");
        self.make_top_whole(cursor.ctx());
        Some(Returned {
            instance: p.instance,
            view: p.view,
            answer: p.answer,
            cursor,
        })
    }

    /// Makes the newest point whole from the context its undo applies to.
    fn make_top_whole(&mut self, newer: &Value) {
        if let Some(top) = self.points.last_mut()
            && top.cursor.is_none()
        {
            let ctx = top.undo.take().unwrap_or_default().apply(newer);
            top.cursor = Some(Cursor::new(ctx, top.instance.clone()));
        }
    }

    /// The points as a continue-as-new carries them: the newest as the undo of `current` (the
    /// run's cursor then), the others as they are.
    pub fn carried(&self, current: &Cursor) -> Vec<BackPoint> {
        let mut points = self.points.clone();
        if let Some(top) = points.last_mut()
            && let Some(cursor) = top.cursor.take()
        {
            top.undo = Some(Undo::between(current.ctx(), cursor.ctx()));
        }
        points
    }

    /// The stack a continued run goes on with: `points` as `carried` made them, against the
    /// run's carried cursor.
    pub fn carried_in(points: Vec<BackPoint>, dropped: bool, current: &Cursor) -> Self {
        let mut stack = Self { points, dropped };
        stack.make_top_whole(current.ctx());
        stack
    }
}

/// Lets the oldest of carried `points` go until `fits` says the rest fit (or none is left);
/// how many were let go.
pub fn drop_to_fit(points: &mut Vec<BackPoint>, mut fits: impl FnMut(&[BackPoint]) -> bool) -> usize {
    let mut n = 0;
    while !points.is_empty() && !fits(points) {
        points.remove(0);
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::json_len;
    use serde_json::json;

    fn view(node: &str) -> View {
        View {
            layout_id: "l".into(),
            node: node.into(),
            input_options: vec![],
            disposition: None,
        }
    }

    fn at(ctx: Value, node: &str) -> Cursor {
        Cursor::new(ctx, node.into())
    }

    #[test]
    fn back_returns_through_each_screen_to_the_context_it_had_when_shown() {
        let big = "x".repeat(100_000);
        let mut stack = BackStack::default();
        let contexts: Vec<Value> = (0..5)
            .map(|i| json!({"fetch": big, "tick": i, "ask:viewResponse": {"n": i}, "only_at_0": (i == 0)}))
            .map(|mut c| {
                if c["only_at_0"] == json!(false) {
                    c.as_object_mut().unwrap().remove("only_at_0");
                }
                c
            })
            .collect();
        for (i, c) in contexts.iter().enumerate() {
            stack.push(format!("ask{i}"), view("ask"), json!({"n": i}), at(c.clone(), "ask"));
        }
        // Carried across continue-as-new at a later screen, then back through all five.
        let now = at(json!({"fetch": big, "tick": 5}), "ask");
        let carried = stack.carried(&now);
        assert!(
            json_len(&carried) < 5_000,
            "the 100 KB field is carried in none of the points: {} bytes",
            json_len(&carried)
        );
        let mut stack = BackStack::carried_in(carried, false, &now);
        for i in (0..5).rev() {
            let r = stack.pop().expect("a point");
            assert_eq!(
                (r.instance.as_str(), r.answer.clone()),
                (format!("ask{i}").as_str(), json!({"n": i}))
            );
            assert_eq!(r.cursor.ctx(), &contexts[i], "screen {i}");
        }
        assert!(stack.pop().is_none());
    }

    #[test]
    fn a_carry_of_a_release_before_undos_still_returns_to_each_screen() {
        let old = json!([
            {"instance": "a", "view": view("a"), "answer": {"x": 1}, "cursor": {"ctx": {"k": 1}, "node": "a"}},
            {"instance": "b", "view": view("b"), "answer": {"x": 2}, "cursor": {"ctx": {"k": 2}, "node": "b"}}
        ]);
        let points: Vec<BackPoint> = serde_json::from_value(old).unwrap();
        let mut stack = BackStack::carried_in(points, false, &at(json!({"k": 3}), "c"));
        stack.push("c".into(), view("c"), json!({}), at(json!({"k": 3}), "c"));
        for k in [3, 2, 1] {
            assert_eq!(stack.pop().unwrap().cursor.ctx(), &json!({ "k": k }));
        }
    }

    #[test]
    fn past_the_kept_count_the_oldest_screens_go_and_the_stack_says_so() {
        let mut stack = BackStack::default();
        for i in 0..BACK_KEPT + 3 {
            stack.push(format!("s{i}"), view("s"), json!(i), at(json!({ "i": i }), "s"));
        }
        assert_eq!((stack.len(), stack.dropped()), (BACK_KEPT, true));
        assert_eq!(stack.pop().unwrap().cursor.ctx(), &json!({"i": BACK_KEPT + 2}));
        stack.clear();
        assert!(!stack.dropped());
    }

    #[test]
    fn drop_to_fit_lets_the_oldest_go_first() {
        let mut stack = BackStack::default();
        for i in 0..4 {
            stack.push(format!("s{i}"), view("s"), json!(i), at(json!({ "i": i }), "s"));
        }
        let mut points = stack.carried(&at(json!({"i": 9}), "s"));
        assert_eq!(drop_to_fit(&mut points, |p| p.len() <= 1), 3);
        assert_eq!(points[0].instance, "s3");
    }
}
