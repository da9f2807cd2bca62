//! The session machine's decisions, without Temporal: each test drives a run the way the
//! workflow does (next effect, publish, command) and checks what the machine decided.

use super::*;
use crate::domain::TenantId;
use crate::engine::Budgets;

fn def(v: Value) -> Definition {
    serde_json::from_value(v).unwrap()
}

fn screen(layout: &str, next: &str) -> Value {
    json!({"node": {"type": "INSTRUCTION", "layoutId": layout, "inputOptions": [
        {"id": "pick", "tags": {"values": ["ui.dropdown"]},
         "possibleValues": [{"displayValue": "A", "value": "a"}, {"displayValue": "B", "value": "b"}]}
    ]}, "nextNode": next})
}

/// fetch (HTTP) → one → two → three (`"back": false`) → pause (WAIT) → done.
fn flow() -> Definition {
    let mut three = screen("three", "pause");
    three["node"]["back"] = json!(false);
    def(json!({
        "id": "s", "startNode": "fetch",
        "states": {
            "fetch": {"node": {"type": "HTTP", "method": "GET", "url": "http://x.test/a"}, "nextNode": "one"},
            "one": screen("one", "two"),
            "two": screen("two", "three"),
            "three": three,
            "pause": {"node": {"type": "WAIT", "durationMs": 1000}, "nextNode": "done"},
            "done": {"node": {"type": "SUCCESS"}}
        }
    }))
}

fn start(d: &Definition) -> WorkflowStart {
    WorkflowStart {
        definition: d.clone().into(),
        children: Default::default(),
        workflow_id: WorkflowId::parse("wf-1").unwrap(),
        tenant: TenantId::parse("t").unwrap(),
        params: json!({}),
        thread_context: json!({}),
        request_id: Some(RequestId::parse("start").unwrap()),
        callback: None,
        history_limit: 1000,
        run: "r".into(),
        seq_base: 0,
        execution_timeout_ms: None,
        budgets: Budgets::default(),
        depth: 0,
        runs_indexed: false,
        lean_index: false,
    }
}

fn rid(s: &str) -> RequestId {
    RequestId::parse(s).unwrap()
}

fn resume(id: &str, seq: u64, pick: &str) -> Command {
    Command::Resume {
        request_id: rid(id),
        seq: Some(seq),
        view_response: json!({"selectedOptions": {"pick": pick}}),
        callback: None,
    }
}

fn back(id: &str, seq: u64) -> Command {
    Command::Back {
        request_id: rid(id),
        seq: Some(seq),
    }
}

/// A run driven as the workflow drives it, with every HTTP call answered 200.
struct Driver<'a> {
    machine: Machine<'a>,
    session: Session,
    published: Vec<WorkflowState>,
}

impl<'a> Driver<'a> {
    fn new(d: &'a Definition, start: WorkflowStart) -> Self {
        let (session, _) = Session::new(WorkflowInput { start, carry: None });
        Driver {
            machine: Machine::new(d),
            session,
            published: vec![],
        }
    }

    fn publish(&mut self, status: WorkflowStatus, view: Option<View>) {
        let state = self.session.state(status, view).expect("within budget");
        self.session.published(&state);
        self.published.push(state);
    }

    /// Runs to the next screen (publishing it unless it was open already): its node and view.
    fn next_screen(&mut self) -> (String, View) {
        loop {
            match self.session.next_effect(&self.machine) {
                (Effect::Http { instance, .. }, _) => {
                    let ok = HttpResponse {
                        status: 200,
                        headers: Default::default(),
                        body: json!({}),
                    };
                    self.session.http_done(&self.machine, instance, Ok(ok));
                }
                (
                    Effect::Screen {
                        instance,
                        view,
                        timeout_ms,
                    },
                    reopened,
                ) => {
                    self.session.screen_shown(reopened, timeout_ms, 0);
                    if !reopened {
                        self.publish(WorkflowStatus::Waiting, Some(view.clone()));
                    }
                    return (instance, view);
                }
                (other, _) => panic!("expected a screen, got {other:?}"),
            }
        }
    }

    fn command(&mut self, on: &(String, View), cmd: Command) -> OnScreen {
        let step = self.session.on_screen(&self.machine, &on.0, &on.1, cmd, 0);
        if let OnScreen::WentBack(view) = &step {
            self.publish(WorkflowStatus::Waiting, Some(view.clone()));
        }
        step
    }

    fn last(&self) -> &WorkflowState {
        self.published.last().expect("a state")
    }
}

#[test]
fn a_retried_command_is_taken_once_and_the_inbox_remembers_a_bounded_number_of_ids() {
    let mut inbox = Inbox::default();
    assert!(inbox.offer(resume("r-1", 1, "a")));
    assert!(!inbox.offer(resume("r-1", 1, "a")), "a retry is dropped");
    assert_eq!(inbox.drain().len(), 1);
    for i in 0..TAKEN_KEPT {
        inbox.offer(back(&format!("b-{i}"), 1));
    }
    assert!(!inbox.offer(back("b-1", 1)), "still remembered");
    assert!(inbox.offer(resume("r-1", 1, "a")), "the oldest id was let go");
    assert_eq!(inbox.taken.len(), TAKEN_KEPT);
}

#[test]
fn an_answer_for_an_older_screen_or_that_does_not_fit_is_refused_and_the_screen_keeps_waiting() {
    let d = flow();
    let mut run = Driver::new(&d, start(&d));
    let one = run.next_screen();
    assert_eq!((one.0.as_str(), run.session.seq), ("one", 1));
    let stale = run.command(&one, resume("r-1", 0, "a"));
    assert_eq!(
        stale,
        OnScreen::Reject(
            rid("r-1"),
            Rejection::StaleScreen {
                answered: 0,
                current: 1
            }
        )
    );
    let OnScreen::Reject(_, Rejection::InvalidAnswer { details }) = run.command(&one, resume("r-2", 1, "z")) else {
        panic!("an answer outside the allowed values is refused");
    };
    assert_eq!(details[0].widget_id, "pick");
    assert_eq!(run.command(&one, resume("r-3", 1, "a")), OnScreen::Answered);
    let two = run.next_screen();
    assert_eq!(two.0, "two");
    assert_eq!(
        run.last().request_id.as_deref(),
        Some("r-3"),
        "the state answers the command"
    );
}

#[test]
fn back_returns_to_the_screen_before_with_its_answer_and_the_next_seq() {
    let d = flow();
    let mut run = Driver::new(&d, start(&d));
    let one = run.next_screen();
    assert!(!run.last().can_go_back, "an HTTP node ran before the first screen");
    assert_eq!(run.last().back_blocked_by.as_deref(), Some("fetch"));
    run.command(&one, resume("r-1", 1, "b"));
    let two = run.next_screen();
    assert!(run.last().can_go_back);
    assert_eq!(run.command(&two, back("b-1", 2)), OnScreen::WentBack(one.1.clone()));
    let state = run.last().clone();
    assert_eq!((state.seq, state.node.as_deref()), (3, Some("one")));
    assert_eq!(state.previous_answer, Some(json!({"pick": "b"})));
    assert_eq!(state.request_id.as_deref(), Some("b-1"));
    // The workflow waits on it again: the next effect is that screen, already published.
    let again = run.next_screen();
    assert_eq!((again.0.as_str(), run.published.len()), ("one", 3));
    assert_eq!(run.command(&again, resume("r-2", 3, "a")), OnScreen::Answered);
    assert_eq!(run.next_screen().0, "two");
    assert_eq!(
        run.last().previous_answer,
        None,
        "only the screen returned to is prefilled"
    );
}

#[test]
fn back_is_refused_across_an_http_node_and_from_a_screen_that_forbids_it() {
    let d = flow();
    let mut run = Driver::new(&d, start(&d));
    let one = run.next_screen();
    let crossed = Rejection::CannotGoBack {
        node: "fetch".into(),
        why: BackBlock::Crossed,
    };
    assert_eq!(run.command(&one, back("b-1", 1)), OnScreen::Reject(rid("b-1"), crossed));
    run.command(&one, resume("r-1", 1, "a"));
    let two = run.next_screen();
    run.command(&two, resume("r-2", 2, "a"));
    let three = run.next_screen();
    assert!(!run.last().can_go_back);
    let forbidden = Rejection::CannotGoBack {
        node: "three".into(),
        why: BackBlock::Forbidden,
    };
    assert_eq!(
        run.command(&three, back("b-2", 3)),
        OnScreen::Reject(rid("b-2"), forbidden)
    );
}

#[test]
fn on_a_timer_an_answer_is_refused_and_execute_node_runs() {
    let d = flow();
    let run = Driver::new(&d, start(&d));
    let refused = run.session.on_timer(resume("r-1", 1, "a"));
    let status = WorkflowStatus::SchedulerWaiting;
    assert_eq!(refused, OnTimer::Reject(rid("r-1"), Rejection::NotWaiting { status }));
    let exec = Command::Execute {
        request_id: rid("x-1"),
        node: "fetch".into(),
        parameters: None,
    };
    assert!(matches!(run.session.on_timer(exec), OnTimer::Execute { node, .. } if node == "fetch"));
    assert_eq!(timer_fires_at(Some(1000), None, 5), 1005);
    assert_eq!(timer_fires_at(Some(1000), Some(42), 5), 42);
}

#[test]
fn execute_node_refuses_a_node_that_is_not_runnable_and_prepares_an_http_call() {
    let d = flow();
    let mut run = Driver::new(&d, start(&d));
    let refused = run.session.execute(&run.machine, "one", None);
    assert!(matches!(refused, Execution::Reject(Rejection::NotExecutable { node }) if node == "one"));
    let Execution::Http { request, .. } = run.session.execute(&run.machine, "fetch", None) else {
        panic!("an HTTP node is called");
    };
    assert_eq!(request.url, "http://x.test/a");
    let result = run.session.executed(&run.machine, "fetch", Err("refused".into()));
    assert_eq!((result.node.as_str(), result.status), ("fetch", NodeOutcome::Failed));
}

#[test]
fn an_input_read_from_its_json_text_is_the_one_the_flattened_derive_reads_with_or_without_a_carry() {
    let d = flow();
    let mut run = Driver::new(&d, start(&d));
    let one = run.next_screen();
    run.session.hold_screen(&one.0, &one.1);
    let mut inbox = Inbox::default();
    inbox.offer(back("b-1", 1));
    let carried = run.session.carry_over(&inbox).expect("fits").input;
    assert!(carried.carry.is_some());
    let fresh = WorkflowInput {
        start: start(&d),
        carry: None,
    };
    for input in [fresh, carried] {
        let text = serde_json::to_vec(&input).unwrap();
        let derived: WorkflowInput = serde_json::from_slice(&text).unwrap();
        assert_eq!(WorkflowInput::from_json(&text).unwrap(), derived);
        assert_eq!(derived, input);
    }
    // Fields neither knows are skipped by both; text that is not an input fails in both.
    let mut extra = serde_json::to_value(WorkflowInput {
        start: start(&d),
        carry: None,
    })
    .unwrap();
    extra["later"] = json!({"added": [1, 2]});
    let text = serde_json::to_vec(&extra).unwrap();
    assert_eq!(WorkflowInput::from_json(&text).unwrap().start, start(&d));
    for bad in [&b"{}"[..], b"[1]", b"{\"carry\": 3}", b"not json"] {
        assert!(WorkflowInput::from_json(bad).is_err());
        assert!(serde_json::from_slice::<WorkflowInput>(bad).is_err());
    }
}

#[test]
fn runs_read_from_their_inputs_share_one_copy_of_each_definition_and_child_they_pin() {
    // An id of its own: other tests' runs of `flow` come and go in the same table meanwhile.
    let d = Definition {
        id: "runs-share-a-copy".into(),
        ..flow()
    };
    let mut st = start(&d);
    st.children.insert("other".into(), d.clone().into());
    let text = serde_json::to_vec(&WorkflowInput { start: st, carry: None }).unwrap();
    let one = WorkflowInput::from_json(&text).unwrap();
    let two = WorkflowInput::from_json(&text).unwrap();
    assert!(std::sync::Arc::ptr_eq(&one.start.definition, &two.start.definition));
    assert!(std::sync::Arc::ptr_eq(
        &one.start.children["other"],
        &two.start.children["other"]
    ));
    // The child pins the parent's own definition here: one copy for both.
    assert!(std::sync::Arc::ptr_eq(
        &one.start.definition,
        &two.start.children["other"]
    ));
    // What each run reads is still its own input.
    assert_eq!(*one.start.definition, d);
    let mut edited = d.clone();
    edited.description = Some("edited, same id and version".into());
    let mut st = start(&edited);
    st.workflow_id = WorkflowId::parse("wf-edited").unwrap();
    let text = serde_json::to_vec(&WorkflowInput { start: st, carry: None }).unwrap();
    let three = WorkflowInput::from_json(&text).unwrap();
    assert!(!std::sync::Arc::ptr_eq(&one.start.definition, &three.start.definition));
    assert_eq!(*three.start.definition, edited);
}

#[test]
fn a_screen_shown_again_keeps_its_deadline_and_a_new_one_starts_its_timeout() {
    let d = flow();
    let (mut s, _) = Session::new(WorkflowInput {
        start: start(&d),
        carry: None,
    });
    s.screen_shown(false, Some(10_000), 1_000);
    assert_eq!(s.screen_left_ms(4_000), Some(7_000));
    s.screen_shown(true, Some(10_000), 9_000);
    assert_eq!(
        s.screen_left_ms(9_000),
        Some(2_000),
        "reopened: the published deadline holds"
    );
    assert_eq!(s.screen_left_ms(20_000), Some(1), "past it: fires at once");
    s.screen_shown(false, None, 9_000);
    assert_eq!(s.screen_left_ms(9_000), None);
}

#[test]
fn continue_as_new_carries_the_open_screen_the_inbox_and_back_and_the_next_run_waits_on_it() {
    let d = flow();
    let mut run = Driver::new(&d, start(&d));
    let one = run.next_screen();
    run.command(&one, resume("r-1", 1, "b"));
    let two = run.next_screen();
    run.session.hold_screen(&two.0, &two.1);
    let mut inbox = Inbox::default();
    inbox.offer(back("b-1", 2));
    let carried = run.session.carry_over(&inbox).expect("fits");
    assert_eq!((carried.let_go, carried.kept), (0, 1));
    // Over the wire, as Temporal carries it.
    let wire = serde_json::to_value(&carried.input).unwrap();
    let input: WorkflowInput = serde_json::from_value(wire).unwrap();
    let (session, mut inbox) = Session::new(input);
    let mut next = Driver {
        machine: Machine::new(&d),
        session,
        published: vec![],
    };
    let reopened = next.next_screen();
    assert_eq!(
        (reopened.0.as_str(), next.published.len()),
        ("two", 0),
        "not published again"
    );
    let cmd = inbox.pop().expect("the carried command");
    assert!(!inbox.offer(cmd.clone()), "its id is still taken");
    assert_eq!(next.command(&reopened, cmd), OnScreen::WentBack(one.1));
    assert_eq!(next.last().seq, 3);
}

#[test]
fn a_carry_over_its_budget_lets_backs_oldest_screens_go_and_one_that_cannot_fit_is_refused() {
    let d = flow();
    let mut run = Driver::new(&d, start(&d));
    let one = run.next_screen();
    run.command(&one, resume("r-1", 1, "b"));
    let two = run.next_screen();
    run.command(&two, resume("r-2", 2, "a"));
    run.next_screen();
    let inbox = Inbox::default();
    let whole = run.session.carry_over(&inbox).expect("fits");
    assert_eq!(whole.kept, 2);
    let base = {
        let mut bare = whole.input.clone();
        bare.carry.as_mut().unwrap().back = vec![];
        json_len(&bare)
    };
    run.session.start.budgets.carry_bytes = base + 10;
    let squeezed = run.session.carry_over(&inbox).expect("fits without Back");
    assert_eq!((squeezed.let_go, squeezed.kept), (2, 0));
    assert!(squeezed.input.carry.unwrap().back_dropped);
    run.session.start.budgets.carry_bytes = 100;
    let over = run.session.carry_over(&inbox).expect_err("cannot fit");
    assert!(over.to_string().contains("carry"), "{over}");
}

#[test]
fn an_end_over_the_state_budget_ends_failed_saying_which_budget() {
    let d = flow();
    let mut st = start(&d);
    st.budgets.state_bytes = 400;
    let (s, _) = Session::new(WorkflowInput { start: st, carry: None });
    let fine = s.ending(EndStatus::Completed, Some(json!({"ok": true})), None);
    assert!(fine.over.is_none());
    assert_eq!(fine.result()["status"], "COMPLETED");
    let big = s.ending(EndStatus::Completed, Some(json!({"blob": "x".repeat(1000)})), None);
    assert!(big.over.is_some());
    assert_eq!(big.state.workflow_status, WorkflowStatus::Failed);
    assert!(big.state.error_message.unwrap().contains("state"));
}

#[test]
fn a_child_start_is_refused_when_its_definition_was_not_pinned_or_it_nests_too_deep() {
    let d = flow();
    let mut st = start(&d);
    let (s, _) = Session::new(WorkflowInput {
        start: st.clone(),
        carry: None,
    });
    let missing = s.child_start("kid", "other", json!({}), 7).unwrap_err();
    assert!(missing.contains("not pinned"), "{missing}");
    st.children.insert("other".into(), d.clone().into());
    st.depth = st.budgets.max_child_depth;
    let (deep, _) = Session::new(WorkflowInput {
        start: st.clone(),
        carry: None,
    });
    assert!(deep.child_start("kid", "other", json!({}), 7).is_err());
    st.depth = 0;
    let (s, _) = Session::new(WorkflowInput { start: st, carry: None });
    let child = s.child_start("kid", "other", json!({"a": 1}), 7).unwrap();
    assert_eq!(child.workflow_id.as_str(), "wf-1.kid.7");
    assert_eq!(child.scoped.to_string(), "t/wf-1.kid.7");
    assert_eq!(child.input.start.depth, 1);
}

#[test]
fn a_screen_whose_node_says_answer_link_is_due_one_living_its_ttl_from_when_it_is_published() {
    let mut d = flow();
    let two = d.states.get_mut("two").and_then(|e| e.node.as_mut());
    let Some(Node::Instruction(two)) = two else {
        panic!("two is a screen")
    };
    two.answer_link = Some(crate::dsl::AnswerLink { ttl: "1h".into() });
    let mut run = Driver::new(&d, start(&d));
    let one = run.next_screen();
    assert_eq!(
        run.session.answer_link(run.last(), 5_000),
        None,
        "screen one asks for none"
    );
    run.command(&one, resume("r-1", 1, "a"));
    run.next_screen();
    let at_two = run.last().clone();
    let due = run
        .session
        .answer_link(&at_two, 5_000)
        .expect("screen two asks for one");
    assert_eq!((due.seq, due.expires_ms), (at_two.seq, 5_000 + 3_600_000));
    let ended = WorkflowState {
        workflow_status: WorkflowStatus::Completed,
        ..at_two
    };
    assert_eq!(
        run.session.answer_link(&ended, 5_000),
        None,
        "only a WAITING state carries one"
    );
}
