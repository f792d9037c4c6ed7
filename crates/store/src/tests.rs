//! The store contract: what every [`Store`] implementation must do, run here against SQLite.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use weft_core::{AttemptState, RunState, StepKey};

use super::*;

async fn open(dir: &tempfile::TempDir, inline_limit: usize) -> SqliteStore {
    let mut options = SqliteOptions::new(dir.path().join("weft.db"));
    options.inline_limit = inline_limit;
    options.sync_full = false;
    SqliteStore::open(options).await.expect("store opens")
}

pub(crate) fn new_run(workflow: &str, key: Option<&str>, now: Millis) -> NewRun {
    NewRun {
        workflow: workflow.into(),
        version: format!("v-{workflow}"),
        file: format!("workflows/{workflow}.yaml"),
        source: "trigger: manual\nsteps: [{id: a, map: 1}]\n".into(),
        trigger: json!({"type": "manual"}),
        input: json!({"n": 1}),
        idempotency_key: key.map(String::from),
        parent: None,
        root: None,
        depth: 0,
        now,
    }
}

const LEASE: Duration = Duration::from_secs(30);

async fn claim_one(store: &dyn Store, now: Millis) -> Claimed {
    let mut claimed = store.claim(&ClaimScope::All, 10, now, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 1, "expected exactly one claimable run");
    claimed.remove(0)
}

/// One value read on a reader connection, as another process would see it.
async fn scalar<T>(store: &SqliteStore, sql: &'static str, param: Option<&str>) -> T
where
    T: rusqlite::types::FromSql + Send + 'static,
{
    let param = param.map(str::to_string);
    store
        .readers
        .read(move |c| Ok(c.query_row(sql, rusqlite::params_from_iter(param), |r| r.get(0))?))
        .await
        .expect("the value reads")
}

fn outcome(state: AttemptState, output: Option<&str>) -> Outcome {
    Outcome {
        state,
        output: output.map(String::from),
        error: None,
        wake_at: None,
    }
}

#[tokio::test]
async fn idempotency_keys_start_one_run_per_workflow() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 1024).await;
    let a = store
        .create_run(new_run("order", Some("evt-1"), 1))
        .await
        .unwrap();
    let b = store
        .create_run(new_run("order", Some("evt-1"), 2))
        .await
        .unwrap();
    let c = store
        .create_run(new_run("refund", Some("evt-1"), 3))
        .await
        .unwrap();
    assert!(matches!(a, Created::New(_)));
    assert_eq!(b, Created::Existing(a.id().to_string()));
    assert!(matches!(c, Created::New(_)));
    let run = store.get_run(a.id()).await.unwrap().unwrap();
    assert_eq!(run.state, RunState::Queued);
    assert_eq!(run.root_id, run.id);
    assert_eq!(run.input, json!({"n": 1}));
    let version = store.load_version("v-order").await.unwrap().unwrap();
    assert_eq!(version.workflow, "order");
}

#[tokio::test]
async fn a_claimed_run_is_not_claimed_twice_until_its_lease_expires() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 1024).await;
    let id = store
        .create_run(new_run("order", None, 1))
        .await
        .unwrap()
        .id()
        .to_string();
    let first = claim_one(&store, 10).await;
    assert_eq!(first.lease.run_id, id);
    assert_eq!(first.run.state, RunState::Running);
    assert!(
        store
            .claim(&ClaimScope::All, 10, 20, LEASE)
            .await
            .unwrap()
            .is_empty()
    );

    // After the lease expires the run is claimed again, and the old holder is fenced off.
    let later = 10 + LEASE.as_millis() as Millis + 1;
    let second = claim_one(&store, later).await;
    assert!(second.lease.epoch > first.lease.epoch);
    let err = store
        .begin_attempt(
            &first.lease,
            &StepKey::top("a"),
            1,
            None,
            AttemptState::Started,
            None,
            later,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { .. }), "{err}");
    store
        .begin_attempt(
            &second.lease,
            &StepKey::top("a"),
            1,
            None,
            AttemptState::Started,
            None,
            later,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_dead_processes_runs_are_claimed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 1024).await;
    store.create_run(new_run("order", None, 1)).await.unwrap();
    {
        let other = open(&dir, 1024).await;
        let claimed = claim_one(&other, 10).await;
        assert_eq!(claimed.lease.owner, other.node_id());
        assert!(
            store
                .claim(&ClaimScope::All, 10, 20, LEASE)
                .await
                .unwrap()
                .is_empty()
        );
    }
    // The other process is gone (its node lock is released), long before its lease ends.
    let claimed = claim_one(&store, 30).await;
    assert_eq!(claimed.lease.owner, store.node_id());
}

#[tokio::test]
async fn attempts_record_inputs_outputs_and_interruptions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 64).await;
    let id = store
        .create_run(new_run("order", None, 1))
        .await
        .unwrap()
        .id()
        .to_string();
    let c = claim_one(&store, 10).await;
    let key = StepKey::top("fetch");
    store
        .begin_attempt(
            &c.lease,
            &key,
            1,
            Some(r#"{"url":"/a"}"#),
            AttemptState::Started,
            None,
            11,
        )
        .await
        .unwrap();
    // The process "dies"; the next attempt marks the first one interrupted.
    store
        .begin_attempt(
            &c.lease,
            &key,
            2,
            Some(r#"{"url":"/a"}"#),
            AttemptState::Started,
            None,
            12,
        )
        .await
        .unwrap();
    let big = json!({"body": "x".repeat(500)}).to_string();
    store
        .finish_attempt(
            &c.lease,
            &key,
            2,
            &outcome(AttemptState::Succeeded, Some(&big)),
            13,
        )
        .await
        .unwrap();
    // The same large output again is stored once.
    store
        .record_attempt(
            &c.lease,
            &StepKey::new("copy", &[0]),
            1,
            Some(&big),
            &outcome(AttemptState::Succeeded, Some(&big)),
            14,
        )
        .await
        .unwrap();

    let attempts = store.attempts(&id).await.unwrap();
    let states: Vec<(String, u32, AttemptState)> = attempts
        .iter()
        .map(|a| (a.step_key.to_string(), a.attempt, a.state))
        .collect();
    assert_eq!(
        states,
        vec![
            ("fetch".into(), 1, AttemptState::Interrupted),
            ("fetch".into(), 2, AttemptState::Succeeded),
            ("copy/0".into(), 1, AttemptState::Succeeded),
        ]
    );
    assert_eq!(
        attempts[1].output.as_ref().unwrap()["body"]
            .as_str()
            .unwrap()
            .len(),
        500
    );
    assert_eq!(
        attempts[2].input.as_ref().unwrap(),
        attempts[2].output.as_ref().unwrap()
    );
    let blobs: i64 = scalar(&store, "SELECT count(*) FROM blobs", None).await;
    assert_eq!(blobs, 1);
    let inline: Option<String> = scalar(
        &store,
        "SELECT output FROM attempts WHERE step_key = 'fetch' AND attempt = 2",
        None,
    )
    .await;
    assert_eq!(
        inline, None,
        "a large output is not stored in the attempt row"
    );
}

#[tokio::test]
async fn parked_runs_wake_when_due() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 1024).await;
    let id = store
        .create_run(new_run("order", None, 1))
        .await
        .unwrap()
        .id()
        .to_string();
    let c = claim_one(&store, 10).await;
    store.park(&c.lease, 1_000, 11).await.unwrap();
    let run = store.get_run(&id).await.unwrap().unwrap();
    assert_eq!((run.state, run.wake_at), (RunState::Waiting, Some(1_000)));
    assert!(
        store
            .claim(&ClaimScope::All, 10, 999, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.next_wake(&ClaimScope::All, 999).await.unwrap(),
        Some(1_000)
    );
    assert_eq!(
        store
            .next_wake(&ClaimScope::Tree("other".into()), 999)
            .await
            .unwrap(),
        None
    );
    let c = claim_one(&store, 1_000).await;
    assert_eq!(c.run.id, id);
    store
        .finish_run(&c.lease, RunState::Succeeded, Some("42"), None, 1_001)
        .await
        .unwrap();
    let run = store.get_run(&id).await.unwrap().unwrap();
    assert_eq!(
        (run.state, run.output),
        (RunState::Succeeded, Some(json!(42)))
    );
    assert_eq!(store.unfinished(&ClaimScope::All).await.unwrap(), 0);
    assert!(matches!(
        store.park(&c.lease, 2_000, 1_002).await,
        Err(StoreError::LeaseLost { .. })
    ));
}

#[tokio::test]
async fn cancel_stops_idle_runs_at_once_and_asks_running_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 1024).await;
    let idle = store
        .create_run(new_run("a", None, 1))
        .await
        .unwrap()
        .id()
        .to_string();
    assert_eq!(
        store.request_cancel(&idle, 2).await.unwrap(),
        CancelOutcome::Cancelled
    );
    assert_eq!(
        store.get_run(&idle).await.unwrap().unwrap().state,
        RunState::Cancelled
    );
    assert!(matches!(
        store.request_cancel(&idle, 3).await,
        Err(StoreError::InvalidState { .. })
    ));

    let busy = store
        .create_run(new_run("b", None, 4))
        .await
        .unwrap()
        .id()
        .to_string();
    let mut child = new_run("c", None, 5);
    child.parent = Some((busy.clone(), StepKey::top("call")));
    child.root = Some(busy.clone());
    child.depth = 1;
    let child = store.create_run(child).await.unwrap().id().to_string();
    let c = store
        .claim(&ClaimScope::Tree(busy.clone()), 1, 6, LEASE)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(c.run.id, busy);
    assert_eq!(
        store.request_cancel(&busy, 7).await.unwrap(),
        CancelOutcome::Requested
    );
    assert_eq!(
        store.get_run(&child).await.unwrap().unwrap().state,
        RunState::Cancelled
    );
    let fence = store
        .begin_attempt(
            &c.lease,
            &StepKey::top("x"),
            1,
            None,
            AttemptState::Started,
            None,
            8,
        )
        .await
        .unwrap();
    assert!(fence.cancel_requested);
    assert_eq!(
        store
            .children(&busy, &StepKey::top("call"))
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn retry_resets_failed_steps_of_a_failed_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 1024).await;
    let id = store
        .create_run(new_run("a", None, 1))
        .await
        .unwrap()
        .id()
        .to_string();
    assert!(matches!(
        store.retry_run(&id, 2).await,
        Err(StoreError::InvalidState { .. })
    ));
    let c = claim_one(&store, 3).await;
    let key = StepKey::top("post");
    store
        .begin_attempt(&c.lease, &key, 1, None, AttemptState::Started, None, 4)
        .await
        .unwrap();
    let mut failed = outcome(AttemptState::Failed, None);
    failed.error = Some(json!({"message": "400"}).to_string());
    store
        .finish_attempt(&c.lease, &key, 1, &failed, 5)
        .await
        .unwrap();
    store
        .finish_run(&c.lease, RunState::Failed, None, failed.error.as_deref(), 6)
        .await
        .unwrap();

    store.retry_run(&id, 7).await.unwrap();
    let run = store.get_run(&id).await.unwrap().unwrap();
    assert_eq!((run.state, run.error), (RunState::Queued, None));
    let attempts = store.attempts(&id).await.unwrap();
    assert_eq!(attempts[0].state, AttemptState::Retrying);
    assert!(attempts[0].budget_reset);
    claim_one(&store, 8).await;
}

#[tokio::test]
async fn run_ids_resolve_from_prefixes_and_list_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 1024).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            store
                .create_run(new_run(if i == 1 { "b" } else { "a" }, None, i))
                .await
                .unwrap()
                .id()
                .to_string(),
        );
    }
    assert_eq!(store.resolve_run_id(&ids[2]).await.unwrap(), ids[2]);
    assert!(matches!(
        store.resolve_run_id("0").await,
        Err(StoreError::Ambiguous { count: 3, .. })
    ));
    assert!(matches!(
        store.resolve_run_id("zz").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.resolve_run_id("ffff").await,
        Err(StoreError::NotFound(_))
    ));

    let all = store
        .list_runs(&RunFilter {
            limit: 10,
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        vec![ids[2].clone(), ids[1].clone(), ids[0].clone()]
    );
    let page = store
        .list_runs(&RunFilter {
            workflow: Some("a".into()),
            before: Some(ids[2].clone()),
            limit: 10,
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].id, ids[0]);
    let queued = store
        .list_runs(&RunFilter {
            state: Some(RunState::Queued),
            limit: 2,
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(queued.len(), 2);

    // A time window (ids are time-ordered) and text in the input.
    let every = store
        .list_runs(&RunFilter {
            limit: 10,
            ..RunFilter::default()
        })
        .await
        .unwrap();
    let first = every.iter().map(|r| r.created_at).min().unwrap();
    let last = every.iter().map(|r| r.created_at).max().unwrap();
    let window = store
        .list_runs(&RunFilter {
            since: Some(first),
            until: Some(last + 1),
            limit: 10,
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(window.len(), 3);
    let later = store
        .list_runs(&RunFilter {
            since: Some(last + 1),
            limit: 10,
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert!(later.is_empty());
    let found = store
        .list_runs(&RunFilter {
            text: Some(every[0].input.to_string()[2..6].to_uppercase()),
            limit: 10,
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert!(!found.is_empty(), "text in the input finds its run");
    let none = store
        .list_runs(&RunFilter {
            text: Some("no such text anywhere".into()),
            limit: 10,
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn trigger_state_is_committed_with_the_runs_it_produced() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 1024).await;
    assert_eq!(store.trigger_state("schedule:tick").await.unwrap(), None);
    let created = store
        .create_runs(
            &[
                new_run("tick", Some("slot:1000"), 1),
                new_run("tick", Some("slot:2000"), 1),
            ],
            Some(("schedule:tick", &json!({"last_slot": 2000}))),
            1,
        )
        .await
        .unwrap();
    assert!(matches!(created[..], [Created::New(_), Created::New(_)]));
    assert_eq!(
        store.trigger_state("schedule:tick").await.unwrap(),
        Some(json!({"last_slot": 2000}))
    );
    // Firing a slot again finds its run and moves nothing back.
    let again = store
        .create_runs(
            &[new_run("tick", Some("slot:2000"), 2)],
            Some(("schedule:tick", &json!({"last_slot": 2000}))),
            2,
        )
        .await
        .unwrap();
    assert_eq!(again, vec![Created::Existing(created[1].id().to_string())]);
    let counts = store.count_unfinished().await.unwrap();
    assert_eq!(counts, vec![("tick".to_string(), RunState::Queued, 2)]);
}

#[tokio::test]
async fn purge_deletes_old_finished_runs_with_their_children_and_payloads() {
    let dir = tempfile::tempdir().unwrap();
    // Inline limit 8: every payload below goes to the blob table.
    let store = open(&dir, 8).await;
    let old = store.create_run(new_run("a", None, 1)).await.unwrap();
    let c = claim_one(&store, 10).await;
    let key = StepKey::new("a", &[]);
    store
        .begin_attempt(
            &c.lease,
            &key,
            1,
            Some("\"a large input\""),
            AttemptState::Started,
            None,
            10,
        )
        .await
        .unwrap();
    store
        .finish_attempt(
            &c.lease,
            &key,
            1,
            &outcome(AttemptState::Succeeded, Some("\"a large output\"")),
            11,
        )
        .await
        .unwrap();
    let child = NewRun {
        parent: Some((old.id().to_string(), key.clone())),
        root: Some(old.id().to_string()),
        depth: 1,
        ..new_run("b", None, 12)
    };
    let child = store.create_run(child).await.unwrap();
    store
        .finish_run(&c.lease, RunState::Succeeded, Some("1"), None, 20)
        .await
        .unwrap();
    let recent = store.create_run(new_run("a", None, 30)).await.unwrap();
    assert_eq!(
        scalar::<i64>(&store, "SELECT COUNT(*) FROM blobs", None).await,
        2
    );
    // Unfinished and recent runs stay; the old one goes with its child run.
    assert_eq!(store.purge_finished(15, 100).await.unwrap(), 0);
    assert_eq!(store.purge_finished(25, 100).await.unwrap(), 2);
    assert!(store.get_run(old.id()).await.unwrap().is_none());
    assert!(store.get_run(child.id()).await.unwrap().is_none());
    assert!(store.get_run(recent.id()).await.unwrap().is_some());
    assert!(store.attempts(old.id()).await.unwrap().is_empty());
    assert_eq!(
        scalar::<i64>(&store, "SELECT COUNT(*) FROM blobs", None).await,
        0
    );
}

#[tokio::test]
async fn approvals_open_once_answer_once_and_wake_their_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 1024).await;
    let id = store
        .create_run(new_run("refund", None, 1))
        .await
        .unwrap()
        .id()
        .to_string();
    let c = claim_one(&store, 10).await;
    let ask = NewApproval {
        run_id: id.clone(),
        step_key: StepKey::new("ok", &[]),
        attempt: 1,
        workflow: "refund".into(),
        message: "Refund 30 EUR?".into(),
        data: json!({"amount": 30}),
        expires_at: Some(100_000),
        now: 11,
    };
    let first = store.open_approval(&ask).await.unwrap();
    // A step that resumes asks again and gets the same approval.
    let again = store
        .open_approval(&NewApproval {
            now: 12,
            ..ask.clone()
        })
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(first.state, ApprovalState::Pending);
    assert_eq!(first.data, json!({"amount": 30}));
    store.park(&c.lease, 100_000, 13).await.unwrap();
    let pending = store.list_approvals(true, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].run_state, RunState::Waiting);

    let answered = store
        .answer_approval(
            &first.id,
            ApprovalState::Approved,
            &json!({"note": "ok"}),
            Some("ada"),
            50,
        )
        .await
        .unwrap();
    assert_eq!(answered.state, ApprovalState::Approved);
    assert_eq!(answered.answer, json!({"note": "ok"}));
    assert_eq!(answered.answered_by.as_deref(), Some("ada"));
    assert_eq!(answered.answered_at, Some(50));
    // The run is due at once, not at its timeout.
    assert_eq!(store.get_run(&id).await.unwrap().unwrap().wake_at, Some(50));
    assert_eq!(claim_one(&store, 51).await.run.id, id);
    assert!(store.list_approvals(true, 10).await.unwrap().is_empty());
    assert_eq!(store.list_approvals(false, 10).await.unwrap().len(), 1);

    // A second answer changes nothing.
    let err = store
        .answer_approval(&first.id, ApprovalState::Rejected, &json!(null), None, 60)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::ApprovalClosed { state, .. } if state == "approved"),
        "{err}"
    );
    assert_eq!(
        store.approval(&first.id).await.unwrap().unwrap().state,
        ApprovalState::Approved
    );
    assert!(matches!(
        store
            .answer_approval("nope", ApprovalState::Approved, &json!(null), None, 60)
            .await,
        Err(StoreError::ApprovalNotFound(_))
    ));
    assert_eq!(
        store
            .approval_for(&id, &StepKey::new("ok", &[]), 1)
            .await
            .unwrap()
            .map(|a| a.id),
        Some(first.id.clone())
    );
    // A later attempt of the step (after an operator's retry) asks anew.
    let retried = store
        .open_approval(&NewApproval {
            attempt: 2,
            now: 70,
            ..ask
        })
        .await
        .unwrap();
    assert_ne!(retried.id, first.id);
    assert_eq!(retried.state, ApprovalState::Pending);
    assert_eq!(retried.attempt, 2);
}

#[tokio::test]
async fn conversation_state_is_namespaced_replaced_and_forgotten_when_it_expires() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 1024).await;
    let now = 1_000_000;
    assert_eq!(store.state_get("c1", "order", now).await.unwrap(), None);
    store
        .state_set("c1", "order", &json!({"id": 7}), None, now)
        .await
        .unwrap();
    store
        .state_set("c2", "order", &json!(8), Some(now + 1000), now)
        .await
        .unwrap();
    assert_eq!(
        store.state_get("c1", "order", now).await.unwrap(),
        Some(json!({"id": 7}))
    );
    store
        .state_set("c1", "order", &json!("replaced"), None, now)
        .await
        .unwrap();
    assert_eq!(
        store.state_get("c1", "order", now).await.unwrap(),
        Some(json!("replaced"))
    );
    assert_eq!(
        store.state_get("c2", "order", now + 999).await.unwrap(),
        Some(json!(8))
    );
    // Expired: reads as absent, and deleting it says it was not there.
    assert_eq!(
        store.state_get("c2", "order", now + 1000).await.unwrap(),
        None
    );
    assert!(!store.state_delete("c2", "order", now + 1000).await.unwrap());
    // Purging removes expired keys only.
    store
        .state_set("c3", "order", &json!(9), Some(now + 1000), now)
        .await
        .unwrap();
    assert_eq!(store.purge_expired_state(now + 999, 100).await.unwrap(), 0);
    assert_eq!(store.purge_expired_state(now + 1000, 100).await.unwrap(), 1);
    assert_eq!(store.state_get("c3", "order", now).await.unwrap(), None);
    assert!(store.state_delete("c1", "order", now).await.unwrap());
    assert!(!store.state_delete("c1", "order", now).await.unwrap());
    assert_eq!(store.state_get("c1", "order", now).await.unwrap(), None);
}

#[tokio::test]
async fn tokens_are_found_by_hash_listed_and_revoked_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 1024).await;
    let token = TokenRecord {
        id: "tok_1".into(),
        hash: "h1".into(),
        role: weft_core::auth::Role::Tool,
        tools: Some(vec!["lookup".into()]),
        name: Some("bot".into()),
        created_at: 1_000,
        expires_at: Some(2_000),
        revoked_at: None,
        parent: None,
    };
    store.create_token(&token).await.unwrap();
    assert_eq!(
        store.token_by_hash("h1").await.unwrap(),
        Some(token.clone())
    );
    assert_eq!(store.token_by_hash("h2").await.unwrap(), None);
    assert!(token.is_live(1_999));
    assert!(!token.is_live(2_000), "expired at its expiry");
    // The same hash cannot be stored twice.
    assert!(
        store
            .create_token(&TokenRecord {
                id: "tok_2".into(),
                ..token.clone()
            })
            .await
            .is_err()
    );
    assert!(store.revoke_token("tok_1", 1_500).await.unwrap());
    assert!(!store.revoke_token("tok_1", 1_600).await.unwrap());
    let listed = store.list_tokens().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].revoked_at, Some(1_500));
    assert!(!listed[0].is_live(1_000));
}

#[tokio::test]
async fn revoking_a_token_ends_its_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 1024).await;
    let token = |id: &str, hash: &str, parent: Option<&str>| TokenRecord {
        id: id.into(),
        hash: hash.into(),
        role: weft_core::auth::Role::Viewer,
        tools: None,
        name: None,
        created_at: 1_000,
        expires_at: None,
        revoked_at: None,
        parent: parent.map(str::to_string),
    };
    store
        .create_token(&token("tok_a", "ha", None))
        .await
        .unwrap();
    store
        .create_token(&token("tok_b", "hb", None))
        .await
        .unwrap();
    store
        .create_token(&token("ses_1", "h1", Some("tok_a")))
        .await
        .unwrap();
    store
        .create_token(&token("ses_2", "h2", Some("tok_b")))
        .await
        .unwrap();
    assert_eq!(
        store.token_by_hash("h1").await.unwrap().unwrap().parent,
        Some("tok_a".to_string())
    );
    // Ending a session leaves its token alone.
    assert!(store.revoke_token("ses_2", 1_100).await.unwrap());
    assert!(
        store
            .token_by_hash("hb")
            .await
            .unwrap()
            .unwrap()
            .is_live(1_200)
    );
    // Revoking a token ends its sessions, and only those.
    assert!(store.revoke_token("tok_a", 1_200).await.unwrap());
    assert!(
        !store
            .token_by_hash("h1")
            .await
            .unwrap()
            .unwrap()
            .is_live(1_300)
    );
    assert!(
        store
            .token_by_hash("hb")
            .await
            .unwrap()
            .unwrap()
            .is_live(1_300)
    );
    // Ended sessions are deleted once they are old enough; tokens never are.
    assert_eq!(
        store.purge_sessions(1_150, 100).await.unwrap(),
        1,
        "ses_2 ended at 1,100"
    );
    assert_eq!(
        store.purge_sessions(1_300, 100).await.unwrap(),
        1,
        "ses_1 ended at 1,200"
    );
    assert!(store.token_by_hash("h1").await.unwrap().is_none());
    assert_eq!(store.list_tokens().await.unwrap().len(), 2);
    assert_eq!(store.purge_sessions(9_999, 100).await.unwrap(), 0);
}

#[tokio::test]
async fn the_audit_log_appends_and_pages_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 1024).await;
    for i in 0..5 {
        let seq = store
            .append_audit(&AuditEntry {
                at: 1_000 + i,
                actor: "tok_a".into(),
                action: "tool.call".into(),
                target: format!("t{i}"),
                details: json!({"i": i}),
            })
            .await
            .unwrap();
        assert_eq!(seq, i as u64 + 1);
    }
    let page = store.list_audit(None, 2, None).await.unwrap();
    let targets: Vec<&str> = page.iter().map(|(_, e)| e.target.as_str()).collect();
    assert_eq!(targets, ["t4", "t3"]);
    let older = store.list_audit(Some(page[1].0), 10, None).await.unwrap();
    let targets: Vec<&str> = older.iter().map(|(_, e)| e.target.as_str()).collect();
    assert_eq!(targets, ["t2", "t1", "t0"]);
    assert_eq!(older[0].1.details, json!({"i": 2}));
    // Matching text, in any field, whatever its case.
    let found = store.list_audit(None, 10, Some("T3")).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].1.target, "t3");
    let by_details = store.list_audit(None, 10, Some("\"i\":4")).await.unwrap();
    assert_eq!(by_details.len(), 1);
    assert_eq!(
        store
            .list_audit(None, 10, Some("tool.call"))
            .await
            .unwrap()
            .len(),
        5
    );
    assert!(
        store
            .list_audit(None, 10, Some("nothing"))
            .await
            .unwrap()
            .is_empty()
    );
}

fn secret(name: &str, key: &str, bytes: &[u8], now: Millis) -> SecretRecord {
    SecretRecord {
        name: name.into(),
        key_id: key.into(),
        nonce: vec![7; 12],
        ciphertext: bytes.to_vec(),
        created_at: now,
        updated_at: now,
    }
}

#[tokio::test]
async fn secrets_are_written_listed_reencrypted_whole_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 1024).await;
    assert!(
        store
            .put_secret(&secret("a", "k1", b"one", 1))
            .await
            .unwrap()
    );
    assert!(
        store
            .put_secret(&secret("b", "k1", b"two", 2))
            .await
            .unwrap()
    );
    // A new value keeps the first write's date.
    assert!(
        !store
            .put_secret(&secret("a", "k1", b"uno", 5))
            .await
            .unwrap()
    );
    let all = store.list_secrets().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        (
            all[0].name.as_str(),
            all[0].ciphertext.as_slice(),
            all[0].created_at,
            all[0].updated_at
        ),
        ("a", &b"uno"[..], 1, 5)
    );
    // Re-encrypting only some of the secrets under a key changes nothing.
    let partial = [secret("a", "k2", b"A", 6)];
    assert!(matches!(
        store.reencrypt_secrets("k1", &partial).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(
        store
            .list_secrets()
            .await
            .unwrap()
            .iter()
            .all(|s| s.key_id == "k1")
    );
    // A value written since the rotation read it is not overwritten with the older one.
    let stale = [secret("a", "k2", b"A", 1), secret("b", "k2", b"B", 2)];
    assert!(matches!(
        store.reencrypt_secrets("k1", &stale).await,
        Err(StoreError::Conflict(_))
    ));
    let mut a = secret("a", "k2", b"A", 5);
    a.created_at = 1;
    let whole = [a, secret("b", "k2", b"B", 2)];
    store.reencrypt_secrets("k1", &whole).await.unwrap();
    // A write under the old key, once the others moved, is refused.
    assert!(matches!(
        store.put_secret(&secret("c", "k1", b"C", 7)).await,
        Err(StoreError::Conflict(_))
    ));
    let all = store.list_secrets().await.unwrap();
    assert!(all.iter().all(|s| s.key_id == "k2"));
    assert_eq!(all[1].ciphertext, b"B");
    assert!(store.delete_secret("a").await.unwrap());
    assert!(!store.delete_secret("a").await.unwrap());
    assert_eq!(store.list_secrets().await.unwrap().len(), 1);
}

/// Writes that arrive together share commits, each caller is answered only once its write is
/// committed, and a write that fails part-way leaves nothing behind while the others in its group
/// commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_commit_in_groups_and_a_failed_one_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(open(&dir, 1024).await);
    store.create_run(new_run("seed", None, 1)).await.unwrap();
    let claimed = claim_one(store.as_ref(), 2).await;
    let updated_at = || {
        scalar::<i64>(
            &store,
            "SELECT updated_at FROM runs WHERE id = ?1",
            Some(&claimed.lease.run_id),
        )
    };
    let updated_before = updated_at().await;
    let before = store.writer.commits();

    let mut tasks = Vec::new();
    for i in 0..64 {
        let store = std::sync::Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let key = format!("evt-{i}");
            let created = store.create_run(new_run("order", Some(&key), 10)).await?;
            // Answered means committed: another connection sees it.
            let seen: i64 = scalar(
                &store,
                "SELECT COUNT(*) FROM runs WHERE id = ?1",
                Some(created.id()),
            )
            .await;
            assert_eq!(seen, 1, "run {i} answered before it was committed");
            Ok::<_, StoreError>(())
        }));
    }
    // Changes the run and then fails, in a savepoint of its own.
    let failing = {
        let store = std::sync::Arc::clone(&store);
        let run = claimed.lease.run_id.clone();
        tokio::spawn(async move {
            store
                .writer
                .write(crate::writer::Isolation::Savepoint, move |c| {
                    c.execute("UPDATE runs SET updated_at = 12345 WHERE id = ?1", [&run])?;
                    Err::<(), _>(StoreError::Conflict("changed, then failed".into()))
                })
                .await
        })
    };
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let err = failing.await.unwrap().unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(
        updated_at().await,
        updated_before,
        "the failed write left its change"
    );

    let runs = store
        .list_runs(&RunFilter {
            workflow: Some("order".into()),
            limit: 1000,
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(runs.len(), 64);
    let commits = store.writer.commits() - before;
    assert!(
        (1..64).contains(&commits),
        "65 concurrent writes took {commits} commits; they should share some"
    );
}

/// A store may outlive the runtime it was opened in (a CLI command ends its runtime first):
/// dropping it then neither panics nor hangs.
#[test]
fn a_store_dropped_after_its_runtime_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = runtime.block_on(async {
        let store = open(&dir, 1024).await;
        store.create_run(new_run("order", None, 1)).await.unwrap();
        store
    });
    drop(runtime);
    drop(store);
}

/// A run de-duplicated against an older version's run does not make its own version count as
/// stored: the next run of that version still stores it (runs refer to their version).
#[tokio::test]
async fn a_deduplicated_run_does_not_mark_its_version_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 1024).await;
    let first = store
        .create_run(new_run("order", Some("evt-1"), 1))
        .await
        .unwrap();
    let mut edited = new_run("order", Some("evt-1"), 2);
    edited.version = "v-order-edited".into();
    let again = store.create_run(edited.clone()).await.unwrap();
    assert!(matches!(again, Created::Existing(ref id) if id == first.id()));
    edited.idempotency_key = Some("evt-2".into());
    let created = store.create_run(edited).await.unwrap();
    assert!(matches!(created, Created::New(_)));
    let version = store.load_version("v-order-edited").await.unwrap();
    assert!(version.is_some(), "the edited version was not stored");
}

/// A run's first claim has epoch 1 (the engine skips reading the history of such a run), and every
/// claim after it a higher one.
#[tokio::test]
async fn the_first_claim_of_a_run_has_epoch_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 1024).await;
    store.create_run(new_run("order", None, 1)).await.unwrap();
    let first = claim_one(&store, 2).await;
    assert_eq!(first.lease.epoch, 1);
    store.release(&first.lease).await.unwrap();
    let again = claim_one(&store, 3).await;
    assert_eq!(again.lease.epoch, 2);
}

/// A run created claimed is stored exactly as a claim would leave it and returned as the claim
/// would have read it: no claim takes it while its lease holds, its lease writes, a later claim
/// after the lease ends fences it off, and a de-duplicated run comes back unclaimed.
#[tokio::test]
async fn runs_created_claimed_are_leased_as_a_claim_would_lease_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 1024).await;
    let mut runs = vec![new_run("order", Some("evt-1"), 5)];
    runs[0].parent = Some(("parent-run".into(), StepKey::top("call")));
    runs[0].root = Some("root-run".into());
    runs[0].depth = 1;
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let deliver = |to: &Arc<Mutex<Vec<Claimed>>>| -> Deliver {
        let to = to.clone();
        Box::new(move |claims| to.lock().unwrap().extend(claims))
    };
    let created = store
        .create_claimed_runs(
            &runs,
            Some(("cursor", &json!(7))),
            5,
            LEASE,
            deliver(&delivered),
        )
        .await
        .unwrap();
    let [Created::New(id)] = created.as_slice() else {
        panic!("expected one new run: {created:?}");
    };
    let claimed = delivered
        .lock()
        .unwrap()
        .pop()
        .expect("its claim was delivered");
    assert!(delivered.lock().unwrap().is_empty());
    assert_eq!(claimed.lease.run_id, *id);
    assert_eq!(claimed.lease.owner, store.node_id());
    assert_eq!(claimed.lease.epoch, 1);
    let stored = store.get_run(id).await.unwrap().unwrap();
    assert_eq!(
        claimed.run, stored,
        "the record returned is the record stored"
    );
    assert_eq!(stored.state, RunState::Running);
    assert_eq!(stored.started_at, Some(5));
    assert_eq!(stored.parent_step.as_deref(), Some("call"));
    assert_eq!(store.trigger_state("cursor").await.unwrap(), Some(json!(7)));
    let until: Millis = scalar(
        &store,
        "SELECT lease_until FROM runs WHERE id = ?1",
        Some(id),
    )
    .await;
    assert_eq!(until, 5 + LEASE.as_millis() as Millis);

    // Held: no claim takes it, and its lease writes.
    assert!(
        store
            .claim(&ClaimScope::All, 10, 6, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    let begin = |lease: Lease, now: Millis| {
        let store = &store;
        async move {
            store
                .begin_attempt(
                    &lease,
                    &StepKey::top("a"),
                    1,
                    None,
                    AttemptState::Started,
                    None,
                    now,
                )
                .await
        }
    };
    begin(claimed.lease.clone(), 7).await.unwrap();

    // The same key again: the run found, not claimed again nor delivered.
    let again = store
        .create_claimed_runs(&runs, None, 8, LEASE, deliver(&delivered))
        .await
        .unwrap();
    assert_eq!(again, vec![Created::Existing(id.clone())]);
    assert!(delivered.lock().unwrap().is_empty());

    // A caller that stops waiting (a client that hung up) still gets its run delivered.
    // The writer is held by a write that waits, so the caller gives up before the commit.
    let (go_on, held) = std::sync::mpsc::channel::<()>();
    store
        .writer
        .queue(
            crate::writer::Isolation::Savepoint,
            move |_| {
                let _ = held.recv();
                Ok(())
            },
            |_: Result<()>| {},
        )
        .unwrap();
    let lone = [new_run("order", None, 9)];
    let abandoned = store.create_claimed_runs(&lone, None, 9, LEASE, deliver(&delivered));
    assert!(
        tokio::time::timeout(Duration::from_millis(50), abandoned)
            .await
            .is_err(),
        "the caller gave up before the commit"
    );
    assert!(delivered.lock().unwrap().is_empty());
    go_on.send(()).unwrap();
    for _ in 0..500 {
        if !delivered.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let orphan = delivered
        .lock()
        .unwrap()
        .pop()
        .expect("delivered without a caller");
    let stored = store.get_run(&orphan.lease.run_id).await.unwrap().unwrap();
    assert_eq!(
        (stored.state, orphan.run),
        (RunState::Running, stored.clone())
    );

    // Once its lease has ended a claim takes it, with the next epoch, and the first lease is done.
    let later = 5 + LEASE.as_millis() as Millis + 1;
    let second = claim_one(&store, later).await;
    assert_eq!(
        (second.lease.run_id.as_str(), second.lease.epoch),
        (id.as_str(), 2)
    );
    let err = begin(claimed.lease.clone(), later).await.unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { .. }), "{err}");
}

/// A queued outcome is stored once a later write under the same lease has returned; one that
/// cannot be stored makes every later fenced write under that lease fail, until the lease is
/// given up, and a new lease on the run writes again.
#[tokio::test]
async fn queued_outcomes_are_stored_before_later_writes_or_stop_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 1024).await;
    store.create_run(new_run("order", None, 1)).await.unwrap();
    let lease = claim_one(&store, 2).await.lease;
    let (a, b) = (StepKey::top("a"), StepKey::top("b"));
    let begin = |step: StepKey, lease: Lease| {
        let store = &store;
        async move {
            store
                .begin_attempt(&lease, &step, 1, None, AttemptState::Started, None, 3)
                .await
        }
    };
    begin(a.clone(), lease.clone()).await.unwrap();
    store.queue_finish_attempt(
        &lease,
        &a,
        1,
        &outcome(AttemptState::Succeeded, Some("1")),
        4,
    );
    begin(b.clone(), lease.clone()).await.unwrap();
    let attempts = store.attempts(&lease.run_id).await.unwrap();
    assert_eq!(attempts[0].state, AttemptState::Succeeded, "{attempts:?}");
    assert_eq!(attempts[0].output, Some(json!(1)));

    // No attempt 7 of `b` to finish: the queued write fails, and so does the next one.
    store.queue_finish_attempt(
        &lease,
        &b,
        7,
        &outcome(AttemptState::Succeeded, Some("2")),
        5,
    );
    let err = store
        .finish_attempt(
            &lease,
            &b,
            1,
            &outcome(AttemptState::Succeeded, Some("2")),
            6,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unsettled { .. }), "{err}");
    assert!(err.is_retryable());
    let attempts = store.attempts(&lease.run_id).await.unwrap();
    assert_eq!(attempts[1].state, AttemptState::Started, "{attempts:?}");

    // Given up and claimed again, the run goes on from what is stored.
    store.release(&lease).await.unwrap();
    let again = claim_one(&store, 7).await.lease;
    assert_eq!(again.epoch, lease.epoch + 1);
    store
        .finish_attempt(
            &again,
            &b,
            1,
            &outcome(AttemptState::Succeeded, Some("2")),
            8,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn the_overview_counts_the_window_by_workflow_and_state_and_every_unfinished_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 1024).await;
    let now = now_millis();
    let day = 24 * 3600 * 1000;
    let mut ids = Vec::new();
    for (workflow, at) in [("a", now - 10_000), ("b", now - 5_000), ("b", now - 1_000)] {
        let created = store.create_run(new_run(workflow, None, at)).await.unwrap();
        ids.push(created.id().to_string());
    }
    let failed = store
        .claim(&ClaimScope::All, 1, now, LEASE)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(failed.run.id, ids[0]);
    store
        .finish_run(
            &failed.lease,
            RunState::Failed,
            None,
            Some(r#"{"message":"boom"}"#),
            now,
        )
        .await
        .unwrap();
    let parked = store
        .claim(&ClaimScope::All, 1, now, LEASE)
        .await
        .unwrap()
        .remove(0);
    store.park(&parked.lease, now + day, now).await.unwrap();
    // Two days old and still queued: outside the window, yet unfinished and the oldest in line.
    store
        .create_run(new_run("a", None, now - 2 * day))
        .await
        .unwrap();

    let seen = store.overview(now - day).await.unwrap();
    let counts: Vec<(&str, RunState, u64)> = seen
        .counts
        .iter()
        .map(|c| (c.workflow.as_str(), c.state, c.count))
        .collect();
    assert_eq!(
        counts,
        [
            ("a", RunState::Failed, 1),
            ("b", RunState::Queued, 1),
            ("b", RunState::Waiting, 1)
        ]
    );
    assert_eq!(seen.counts[0].newest_id, ids[0]);
    assert_eq!(
        seen.unfinished,
        [(RunState::Queued, 2), (RunState::Waiting, 1)]
    );
    assert_eq!(seen.oldest_queued, Some(now - 2 * day));
    assert_eq!(seen.pending_approvals, 0);
}

/// A measurement, not a check (run it with `cargo test -p weft-store --release -- --ignored
/// --nocapture a_million`): the console's overview and a text search of runs on a store with a
/// million runs, all created within the overview's window (its worst case: every run is counted).
#[tokio::test]
#[ignore]
async fn a_million_runs_overview_and_search_timings() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 1024).await;
    let started = std::time::Instant::now();
    let now = now_millis();
    for batch in 0..100 {
        let runs: Vec<NewRun> = (0..10_000)
            .map(|i| {
                let mut run = new_run(&format!("w{}", i % 10), None, now);
                run.input = json!({"order": format!("A-{batch}-{i}")});
                run
            })
            .collect();
        store.create_runs(&runs, None, now).await.unwrap();
    }
    eprintln!("created 1,000,000 runs in {:?}", started.elapsed());
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let overview = store.overview(now - 24 * 3600 * 1000).await.unwrap();
        let total: u64 = overview.counts.iter().map(|c| c.count).sum();
        assert_eq!(total, 1_000_000);
        eprintln!("overview (1,000,000 runs in the window): {:?}", t.elapsed());
        let t = std::time::Instant::now();
        let empty = store.overview(now + 1).await.unwrap();
        assert!(empty.counts.is_empty());
        eprintln!("overview (no run in the window): {:?}", t.elapsed());
        let t = std::time::Instant::now();
        let found = store
            .list_runs(&RunFilter {
                text: Some("A-99-9999".into()),
                limit: 25,
                ..RunFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
        eprintln!("text search, a match among the newest: {:?}", t.elapsed());
        let t = std::time::Instant::now();
        let oldest = store
            .list_runs(&RunFilter {
                text: Some("\"A-0-0\"".into()),
                limit: 25,
                ..RunFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(oldest.len(), 1);
        eprintln!(
            "text search, the only match the oldest (every run read): {:?}",
            t.elapsed()
        );
        let t = std::time::Instant::now();
        let page = store
            .list_runs(&RunFilter {
                workflow: Some("w3".into()),
                limit: 25,
                ..RunFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(page.len(), 25);
        eprintln!("a page of one workflow's runs: {:?}", t.elapsed());
    }
}
